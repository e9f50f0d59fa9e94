#!/usr/bin/python3
"""Try model kinds as a new user would: build each (torchvision
architectures at small image sizes, nn.Transformer, GPT-2/T5 blocks, a
conformer block, GRU/LSTM classifiers, UNets, activation/data-movement
models; random seeded weights, no downloads), export it with
torch.onnx.export at each opset, convert it with dynq-quantize, and
compare against ONNX Runtime on the same inputs: FP32 max |d| / max |ref|
against ORT FP32, INT8 relL2 against ORT FP32 beside ORT's dynamic-INT8
graph's (dq_convert.py --conv).  One RESULT line per model and opset:
OK with the figures, REFUSED with dynq-quantize's list of nodes, or
EXPORT FAIL.  Exploration, not a test: the committed fixtures are
tests/fixtures/make_zoo.py's.

  /usr/bin/python3 bench/ort/zoo_try.py [NAME,...] [OPSET,...]
      (environment: NODE_PATH=.../node_modules with onnxruntime-node, ZOO_NOFOLD=1
       to export with do_constant_folding=False,
       DYNQ_BUILD=build, ZOO_OUT=/tmp/zoo-try; needs python3-torchvision)

With ZOO_DRAWS=N (accuracy mode) each model is exported once per opset and
compared on N input draws of each kind (images: random normal and smooth,
structured images; other inputs: normal), one DRAW line per draw and a
WORST line per model (the largest dynq/ORT ratio over the draws).
ZOO_QFLAGS="--flag ..." adds dynq-quantize options (A/B of a default).
"""
import json, os, subprocess, sys, zlib
import numpy as np, onnx, torch, torch.nn as nn, torch.nn.functional as F
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dq_convert
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, os.environ.get("DYNQ_BUILD", "build"))
OUT = os.environ.get("ZOO_OUT", "/tmp/zoo-try")
NODE = os.environ.get("NODE_PATH", "/tmp/cnn-ort/node_modules")
os.makedirs(OUT, exist_ok=True)
try:
    import torchvision.models as tvm  # only the torchvision kinds need it
except ImportError:
    tvm = None

class GPT2Block(nn.Module):
    def __init__(s, d=32, h=4):
        super().__init__(); s.h=h; s.ln1=nn.LayerNorm(d); s.ln2=nn.LayerNorm(d)
        s.qkv=nn.Linear(d,3*d); s.proj=nn.Linear(d,d); s.fc=nn.Linear(d,4*d); s.fc2=nn.Linear(4*d,d)
    def forward(s, x):
        b,t,d=x.shape
        q,k,v=s.qkv(s.ln1(x)).split(d,dim=2)
        q=q.view(b,t,s.h,-1).transpose(1,2);k=k.view(b,t,s.h,-1).transpose(1,2);v=v.view(b,t,s.h,-1).transpose(1,2)
        a=(q@k.transpose(-2,-1))*(1.0/(k.size(-1)**0.5))
        mask=torch.tril(torch.ones(t,t,device=x.device)).view(1,1,t,t)
        a=a.masked_fill(mask==0,float('-inf'))
        a=F.softmax(a,dim=-1)
        y=(a@v).transpose(1,2).contiguous().view(b,t,d)
        x=x+s.proj(y)
        h=s.fc(s.ln2(x)); h=0.5*h*(1.0+torch.tanh(0.7978845608*(h+0.044715*torch.pow(h,3.0))))
        return x+s.fc2(h)

class RMSNorm(nn.Module):
    def __init__(s,d): super().__init__(); s.w=nn.Parameter(torch.ones(d))
    def forward(s,x):
        v=x.pow(2).mean(-1,keepdim=True); return s.w*(x*torch.rsqrt(v+1e-6))
class T5Block(nn.Module):
    def __init__(s,d=32,h=4,ff=64):
        super().__init__(); s.h=h; s.n1=RMSNorm(d); s.n2=RMSNorm(d)
        s.q=nn.Linear(d,d,bias=False); s.k=nn.Linear(d,d,bias=False); s.v=nn.Linear(d,d,bias=False); s.o=nn.Linear(d,d,bias=False)
        s.wi=nn.Linear(d,ff,bias=False); s.wo=nn.Linear(ff,d,bias=False); s.rel=nn.Embedding(32,h)
    def bucket(s, rp, nb=32, maxd=128):
        n=nb//2; ret=(rp>0).long()*n; rp=torch.abs(rp); me=n//2; small=rp<me
        large=me+(torch.log(rp.float()/me+1e-6)/np.log(maxd/me)*(n-me)).long()
        large=torch.min(large,torch.full_like(large,n-1))
        return ret+torch.where(small,rp,large)
    def forward(s,x):
        b,t,d=x.shape
        pos=torch.arange(t); rp=pos[None,:]-pos[:,None]
        bias=s.rel(s.bucket(rp)).permute(2,0,1).unsqueeze(0)
        y=s.n1(x)
        q=s.q(y).view(b,t,s.h,-1).transpose(1,2);k=s.k(y).view(b,t,s.h,-1).transpose(1,2);v=s.v(y).view(b,t,s.h,-1).transpose(1,2)
        a=torch.softmax(q@k.transpose(-1,-2)+bias,-1)
        x=x+s.o((a@v).transpose(1,2).reshape(b,t,d))
        return x+s.wo(F.relu(s.wi(s.n2(x))))

class Conformer(nn.Module):
    def __init__(s,d=32,k=15):
        super().__init__(); s.ln=nn.LayerNorm(d); s.pw1=nn.Conv1d(d,2*d,1); s.dw=nn.Conv1d(d,d,k,padding=k//2,groups=d)
        s.bn=nn.BatchNorm1d(d); s.pw2=nn.Conv1d(d,d,1); s.ff=nn.Linear(d,4*d); s.ff2=nn.Linear(4*d,d)
    def forward(s,x):
        y=s.ln(x).transpose(1,2); y=F.glu(s.pw1(y),dim=1); y=s.dw(y); y=s.bn(y); y=y*torch.sigmoid(y)
        x=x+s.pw2(y).transpose(1,2)
        return x+0.5*s.ff2(F.silu(s.ff(x)))

class RNNCls(nn.Module):
    def __init__(s,kind="gru",d=20,h=32,packed=False,bi=False):
        super().__init__(); s.packed=packed
        s.rnn=(nn.GRU if kind=="gru" else nn.LSTM)(d,h,num_layers=2,batch_first=True,bidirectional=bi)
        s.fc=nn.Linear(h*(2 if bi else 1),5)
    def forward(s,x,lens=None):
        if s.packed:
            p=nn.utils.rnn.pack_padded_sequence(x,lens,batch_first=True,enforce_sorted=False)
            o,_=s.rnn(p); o,_=nn.utils.rnn.pad_packed_sequence(o,batch_first=True)
        else:
            o,_=s.rnn(x)
        return F.log_softmax(s.fc(o.mean(1)),-1)

class UNet(nn.Module):
    def __init__(s,c=8,up="transpose"):
        super().__init__(); s.upk=up
        s.e1=nn.Sequential(nn.Conv2d(3,c,3,padding=1),nn.GroupNorm(2,c),nn.ReLU())
        s.e2=nn.Sequential(nn.Conv2d(c,2*c,3,padding=1,groups=1),nn.InstanceNorm2d(2*c,affine=True),nn.LeakyReLU(0.1))
        s.mid=nn.Sequential(nn.Conv2d(2*c,2*c,3,padding=1,groups=2),nn.PReLU(2*c))
        s.up=nn.ConvTranspose2d(2*c,c,2,stride=2) if up=="transpose" else nn.Conv2d(2*c,c,1)
        s.d1=nn.Sequential(nn.Conv2d(2*c,c,3,padding=1),nn.ELU())
        s.out=nn.Conv2d(c,2,1)
    def forward(s,x):
        a=s.e1(x); b=s.e2(F.max_pool2d(a,2)); b=s.mid(b)
        if s.upk=="transpose": u=s.up(b)
        elif s.upk=="bilinear": u=s.up(F.interpolate(b,scale_factor=2,mode="bilinear",align_corners=False))
        elif s.upk=="bilinear_ac": u=s.up(F.interpolate(b,scale_factor=2,mode="bilinear",align_corners=True))
        else: u=s.up(F.interpolate(b,scale_factor=2,mode="nearest"))
        return s.out(s.d1(torch.cat([u,a],1)))

class UNetGT(nn.Module):  # grouped ConvTranspose
    def __init__(s): super().__init__(); s.c=nn.Conv2d(3,8,3,padding=1); s.t=nn.ConvTranspose2d(8,8,4,stride=2,padding=1,groups=4); s.o=nn.Conv2d(8,2,1)
    def forward(s,x): return s.o(F.relu(s.t(F.relu(s.c(x)))))

class Misc(nn.Module):
    def __init__(s):
        super().__init__(); s.fc=nn.Linear(16,16); s.pr=nn.PReLU(); s.fc2=nn.Linear(16,8)
    def forward(s,x):
        b,t,d=x.shape
        y=s.fc(x)
        y=F.pad(y.transpose(1,2),(2,1),mode="reflect").transpose(1,2)
        y=torch.flip(y,[1])[:, :t]
        y=F.mish(y)+F.softplus(y)+F.selu(y)+F.elu(y)+F.celu(y)+s.pr(y)+F.softsign(y)
        idx=torch.argmax(x[:,:,0],dim=1)
        g=torch.gather(y,1,idx.view(b,1,1).expand(b,1,d))
        y=y+g
        v,i=torch.topk(y,4,dim=-1)
        z=s.fc2(y)
        z=z.reshape(z.shape[0],-1,z.shape[-1])
        return F.log_softmax(z,-1).sum(-1)+v.sum(-1)+i.float().mean(-1)

class ShapeChain(nn.Module):
    def __init__(s): super().__init__(); s.fc=nn.Linear(24,24); s.fc2=nn.Linear(24,6)
    def forward(s,x):
        b,t=x.shape[0],x.shape[1]
        y=s.fc(x).view(b,t,4,6).permute(0,2,1,3).reshape(b*4,t,6)
        y=torch.cat([y,y[:,-1:,:]],1)
        y=y.reshape(b,4,t+1,6).permute(0,2,1,3).flatten(2)
        y=torch.clamp(y,min=-1.0,max=torch.tensor(2.0))
        y=torch.maximum(y,torch.zeros_like(y))+torch.minimum(y,torch.ones_like(y))
        return s.fc2(y[:, ::2]) * torch.reciprocal(torch.abs(y[:, ::2, :6])+1)

def vit():
    from torchvision.models.vision_transformer import VisionTransformer
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10)

def txf():
    class T(nn.Module):
        def __init__(s):
            super().__init__(); s.t=nn.Transformer(32,4,2,2,64,dropout=0.0,batch_first=True)
        def forward(s,src,tgt):
            m=nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
            return s.t(src,tgt,tgt_mask=m)
    return T()
def tdec():
    class T(nn.Module):
        def __init__(s):
            super().__init__(); s.t=nn.TransformerDecoder(nn.TransformerDecoderLayer(32,4,64,dropout=0.0,batch_first=True,norm_first=True),2)
        def forward(s,tgt,mem):
            t=tgt.shape[1]
            m=torch.triu(torch.full((t,t),float('-inf')),diagonal=1)
            return s.t(tgt,mem,tgt_mask=m)
    return T()

B=8
def img(n=32): return [("x", torch.randn(B,3,n,n))]

def smooth_images(shape, g):
    """Structured images: a low-resolution random field upsampled (smooth
    regions), plus gradients and a few sharp edges, normalised per channel
    as a torchvision transform would leave a photo (mean ~0, std ~1)."""
    b, c, h, w = shape
    lo = torch.randn(b, c, max(2, h // 8), max(2, w // 8), generator=g)
    x = F.interpolate(lo, size=(h, w), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    ang = torch.rand(b, 1, 1, 1, generator=g) * 6.283
    x = x + 0.8 * (torch.cos(ang) * xx + torch.sin(ang) * yy)
    edge = (xx[None, None] > (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1)).float()
    x = x + edge * (torch.rand(b, c, 1, 1, generator=g) * 2 - 1)
    x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True).clamp_min(1e-3)
    return x

def draw_inputs(inputs, kind, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, t in inputs:
        if t.dtype != torch.float32: out.append((n, t)); continue
        if kind == "smooth" and t.dim() == 4: out.append((n, smooth_images(tuple(t.shape), g)))
        else: out.append((n, torch.randn(t.shape, generator=g)))
    return out
SPECS = {
 "resnet18": (lambda: tvm.resnet18(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "mnv3s": (lambda: tvm.mobilenet_v3_small(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "squeeze": (lambda: tvm.squeezenet1_1(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "shuffle": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "effb0": (lambda: tvm.efficientnet_b0(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "densenet": (lambda: tvm.densenet121(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "regnet": (lambda: tvm.regnet_y_400mf(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "mnasnet": (lambda: tvm.mnasnet0_5(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "resnet50": (lambda: tvm.resnet50(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "mnv2": (lambda: tvm.mobilenet_v2(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "mnv3l": (lambda: tvm.mobilenet_v3_large(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "convnext": (lambda: tvm.convnext_tiny(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "googlenet": (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=True), lambda: img(64), {"x":{0:"b"}}),
 "alexnet": (lambda: tvm.alexnet(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "vgg11": (lambda: tvm.vgg11_bn(num_classes=10), lambda: img(32), {"x":{0:"b"}}),
 "vit": (vit, lambda: img(32), {"x":{0:"b"}}),
 "swin": (lambda: tvm.swin_t(num_classes=10), lambda: img(64), {"x":{0:"b"}}),
 "transformer": (txf, lambda: [("src",torch.randn(B,10,32)),("tgt",torch.randn(B,7,32))], {"src":{0:"b",1:"s"},"tgt":{0:"b",1:"t"}}),
 "tdecoder": (tdec, lambda: [("tgt",torch.randn(B,7,32)),("mem",torch.randn(B,10,32))], {"tgt":{0:"b",1:"t"},"mem":{0:"b",1:"s"}}),
 "gpt2": (GPT2Block, lambda: [("x",torch.randn(B,12,32))], {"x":{0:"b",1:"s"}}),
 "t5": (T5Block, lambda: [("x",torch.randn(B,12,32))], {"x":{0:"b",1:"s"}}),
 "conformer": (Conformer, lambda: [("x",torch.randn(B,20,32))], {"x":{0:"b",1:"s"}}),
 "gru": (lambda: RNNCls("gru"), lambda: [("x",torch.randn(B,15,20))], {"x":{0:"b",1:"s"}}),
 "lstm_bi": (lambda: RNNCls("lstm",bi=True), lambda: [("x",torch.randn(B,15,20))], {"x":{0:"b",1:"s"}}),
 "lstm_packed": (lambda: RNNCls("lstm",packed=True), lambda: [("x",torch.randn(B,15,20)),("lens",torch.tensor([15,9]))], {"x":{0:"b",1:"s"},"lens":{0:"b"}}),
 "unet_t": (lambda: UNet(up="transpose"), lambda: img(32), {"x":{0:"b",2:"h",3:"w"}}),
 "unet_bl": (lambda: UNet(up="bilinear"), lambda: img(32), {"x":{0:"b"}}),
 "unet_ac": (lambda: UNet(up="bilinear_ac"), lambda: img(32), {"x":{0:"b"}}),
 "unet_nn": (lambda: UNet(up="nearest"), lambda: img(32), {"x":{0:"b"}}),
 "unet_gt": (UNetGT, lambda: img(16), {"x":{0:"b"}}),
 "misc": (Misc, lambda: [("x",torch.randn(B,10,16))], {"x":{0:"b",1:"s"}}),
 "shapechain": (ShapeChain, lambda: [("x",torch.randn(B,9,24))], {"x":{0:"b",1:"s"}}),
}

import zoo_kinds
SPECS.update(zoo_kinds.KINDS)
FOLD = os.environ.get("ZOO_NOFOLD") is None  # ZOO_NOFOLD=1: export with do_constant_folding=False

def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)

def rel_l2(a,b): return float(np.linalg.norm(a-b)/max(np.linalg.norm(b),1e-30))
def write_inputs(inputs, tag):
    spec={"inputs":[]}; mbin=[]
    for n,t in inputs:
        a=t.numpy(); f=f"{OUT}/{tag}_{n}.bin"; a.tofile(f)
        dt={"float32":"float32","int64":"int64"}[str(a.dtype)]
        spec["inputs"].append({"name":n,"dtype":dt,"shape":list(a.shape),"file":f})
        mbin.append(f"{n}:{'f32' if dt=='float32' else 'i64'}:{'x'.join(map(str,a.shape))}={f}")
    json.dump(spec,open(f"{OUT}/{tag}.json","w"))
    return mbin

def draws_one(name, m, inputs, dyn, op, ndraw):
    import time
    base=f"{OUT}/{name}_op{op}"
    torch.onnx.export(m,tuple(t for _,t in inputs),base+".onnx",opset_version=op,
        input_names=[n for n,_ in inputs],output_names=["y"],dynamic_axes=dyn,do_constant_folding=True)
    qf=os.environ.get("ZOO_QFLAGS","").split()
    t0=time.process_time()
    r=run([f"{BUILD}/models/dynq-quantize"]+qf+[base+".onnx",base+".dynq"])
    if r.returncode!=0:
        print(f"RESULT {name} op{op}: REFUSED {(r.stderr+r.stdout)[-400:]}", flush=True); return
    tq=r.stderr  # progress lines, if any
    mm=onnx.load(base+".onnx"); dq_convert.convert(mm,conv=True); onnx.save(mm,base+"_dq.onnx")
    worst=0; lines=[]
    kinds=["normal","smooth"] if any(t.dim()==4 for _,t in inputs) else ["normal"]
    for kind in kinds:
        for d in range(ndraw):
            ins=draw_inputs(inputs,kind,1000*d+len(kind))
            tag=f"{name}_{kind}{d}"
            mbin=write_inputs(ins,tag)
            r=run(["node",f"{HERE}/run.js","--spec",f"{OUT}/{tag}.json","--model",base+".onnx","--model",base+"_dq.onnx","--out",f"{OUT}/{tag}","--reps","0"],env=dict(os.environ,NODE_PATH=NODE))
            if r.returncode!=0:
                print(f"RESULT {name} op{op}: ORT FAIL {r.stderr[-300:]}", flush=True); return
            res=[json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
            yf=np.fromfile(res[0]["outputs"][0]["file"],np.float32); yq=np.fromfile(res[1]["outputs"][0]["file"],np.float32)
            ort8=rel_l2(yq,yf)
            cmd=[f"{BUILD}/bench/model-bench",base+".dynq"]+sum((["--input",s_] for s_ in mbin),[])+["--rounds","1","--ref",res[0]["outputs"][0]["file"],"--json"]
            r=run(cmd)
            if r.returncode!=0:
                print(f"RESULT {name} op{op}: RUN FAIL {(r.stderr+r.stdout)[-400:]}", flush=True); return
            j=json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
            ratio=j['int8_rel_l2']/max(ort8,1e-12); worst=max(worst,ratio)
            print(f"DRAW {name} op{op} {kind}{d}: int8 relL2 {j['int8_rel_l2']:.5f} ORT8 {ort8:.5f} ratio {ratio:.2f}", flush=True)
    print(f"WORST {name} op{op}: ratio {worst:.2f}", flush=True)

def main():
    names=[n for n in (sys.argv[1].split(",") if len(sys.argv)>1 and sys.argv[1] else SPECS)]
    opsets=[int(o) for o in (sys.argv[2].split(",") if len(sys.argv)>2 else ["13","14","17"])]
    for name in names:
        mk, ins, dyn = SPECS[name]
        torch.manual_seed(zlib.crc32(name.encode()))
        m = mk(); m.eval()
        with torch.no_grad():
            g=torch.Generator().manual_seed(zlib.crc32(name.encode()))
            for p_ in m.parameters():
                if p_.dim()>1 and float(p_.abs().max())==0: p_.copy_(torch.randn(p_.shape,generator=g)*0.05)
            for mod in m.modules():
                if isinstance(mod,(nn.BatchNorm1d,nn.BatchNorm2d)):
                    mod.running_mean.normal_(0,0.1); mod.running_var.uniform_(0.75,1.25)
        inputs = ins()
        if os.environ.get("ZOO_DRAWS"):
            for op in opsets: draws_one(name, m, inputs, dyn, op, int(os.environ["ZOO_DRAWS"]))
            continue
        with torch.no_grad(): ref = m(*[t for _,t in inputs])
        spec={"inputs":[]}; mbin=[]
        for n,t in inputs:
            a=t.numpy(); f=f"{OUT}/{name}_{n}.bin"; a.tofile(f)
            dt={"float32":"float32","int64":"int64"}[str(a.dtype)]
            spec["inputs"].append({"name":n,"dtype":dt,"shape":list(a.shape),"file":f})
            mbin.append(f"{n}:{'f32' if dt=='float32' else 'i64'}:{'x'.join(map(str,a.shape))}={f}")
        json.dump(spec,open(f"{OUT}/{name}.json","w"))
        for op in opsets:
            base=f"{OUT}/{name}_op{op}"+("" if FOLD else "_nofold")
            try:
                torch.onnx.export(m,tuple(t for _,t in inputs),base+".onnx",opset_version=op,
                    input_names=[n for n,_ in inputs],output_names=["y"],dynamic_axes=dyn,do_constant_folding=FOLD)
            except Exception as e:
                print(f"RESULT {name} op{op}: EXPORT FAIL {str(e).splitlines()[0][:150]}", flush=True); continue
            ops=sorted({n.op_type for n in onnx.load(base+".onnx").graph.node})
            r=run([f"{BUILD}/models/dynq-quantize",base+".onnx",base+".dynq"])
            if r.returncode!=0:
                msg=(r.stderr+r.stdout).strip().replace("\n"," | ")[:600]
                print(f"RESULT {name} op{op}: REFUSED {msg}\n   ops: {' '.join(ops)}", flush=True); continue
            mm=onnx.load(base+".onnx"); dq_convert.convert(mm,conv=True); onnx.save(mm,base+"_dq.onnx")
            r=run(["node",f"{HERE}/run.js","--spec",f"{OUT}/{name}.json","--model",base+".onnx","--model",base+"_dq.onnx","--out",OUT,"--reps","0"],env=dict(os.environ,NODE_PATH=NODE))
            if r.returncode!=0:
                print(f"RESULT {name} op{op}: ORT FAIL {r.stderr[-300:]}", flush=True); continue
            res=[json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
            yf=np.fromfile(res[0]["outputs"][0]["file"],np.float32); yq=np.fromfile(res[1]["outputs"][0]["file"],np.float32)
            ort8=rel_l2(yq,yf); tr=float(np.abs(ref.numpy().ravel()-yf).max()/np.abs(yf).max())
            cmd=[f"{BUILD}/bench/model-bench",base+".dynq"]+sum((["--input",s] for s in mbin),[])+["--rounds","1","--ref",res[0]["outputs"][0]["file"],"--json"]
            r=run(cmd)
            if r.returncode!=0:
                print(f"RESULT {name} op{op}: RUN FAIL {(r.stderr+r.stdout)[-400:]}", flush=True); continue
            j=json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
            print(f"RESULT {name} op{op}{'' if FOLD else ' nofold'}: OK fp32 maxrel {j['fp32_max_rel']:.2e} int8 relL2 {j['int8_rel_l2']:.5f} ORT8 {ort8:.5f} ratio {j['int8_rel_l2']/max(ort8,1e-12):.2f} (torch-vs-ort {tr:.1e})", flush=True)
main()
