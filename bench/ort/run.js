#!/usr/bin/env node
// Runs ONNX models through ONNX Runtime (CPU, one thread by default) on
// inputs read from raw files, writes the outputs as raw files and prints
// one JSON line per model: output names/shapes/files and the median time.
// Several --model flags are timed in interleaved rounds (same inputs), so
// ORT FP32 and ORT dynamic INT8 (dq_convert.py) are compared in one run.
//
// usage: node run.js --spec SPEC.json --model A.onnx [--model B.onnx ...]
//                    [--out DIR] [--reps N] [--threads T] [--cpu] [--no-opt]
//   SPEC.json: {"inputs": [{"name", "dtype": "float32"|"int64"|"int32",
//                            "shape": [..], "file": "raw little-endian"}]}
//   outputs go to DIR/<model basename>.<output name>.<f32|i64> (no --out:
//   not written).  --reps 0 runs once and reports no time.
//   --cpu: the process's CPU time per run (user + system, all threads)
//   instead of wall time: on a loaded machine, what the run cost rather
//   than how long it waited (with --threads 1 ORT computes on one thread
//   while Node's own thread idles).
//   --no-opt: graph optimizations off, so every node runs as written (a QDQ
//   graph's QuantizeLinear/DequantizeLinear pairs as float round trips
//   instead of fused into ORT's integer kernels).
// Pin the process yourself (taskset -c 1 node run.js ...).
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const TYPES = {
  float32: [Float32Array, 'f32'], int64: [BigInt64Array, 'i64'],
  int32: [Int32Array, 'i32'], bool: [Uint8Array, 'u8'],
};

function usage(code) {
  console.error('usage: node run.js --spec SPEC.json --model A.onnx [--model B.onnx ...] ' +
                '[--out DIR] [--reps N] [--threads T] [--cpu] [--no-opt] [--config KEY=VALUE]...');
  process.exit(code);
}

function loadInputs(specFile) {
  const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
  const base = path.dirname(specFile);
  const feeds = {};
  for (const inp of spec.inputs) {
    const t = TYPES[inp.dtype];
    if (!t) throw new Error(`input ${inp.name}: dtype ${inp.dtype} not supported`);
    const buf = fs.readFileSync(path.resolve(base, inp.file));
    const n = inp.shape.reduce((a, b) => a * b, 1);
    if (buf.length !== n * t[0].BYTES_PER_ELEMENT)
      throw new Error(`input ${inp.name}: ${inp.file} has ${buf.length} bytes, ` +
                      `shape [${inp.shape}] needs ${n * t[0].BYTES_PER_ELEMENT}`);
    const data = new t[0](buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    feeds[inp.name] = new ort.Tensor(inp.dtype === 'bool' ? 'bool' : inp.dtype, data, inp.shape);
  }
  return feeds;
}

async function main() {
  const args = process.argv.slice(2);
  const models = [];
  let spec = null, out = null, reps = 20, threads = 1, cpu = false, opt = 'all';
  const config = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i], v = () => { if (i + 1 >= args.length) usage(2); return args[++i]; };
    if (a === '--spec') spec = v();
    else if (a === '--model') models.push(v());
    else if (a === '--out') out = v();
    else if (a === '--reps') reps = +v();
    else if (a === '--threads') threads = +v();
    else if (a === '--cpu') cpu = true;
    else if (a === '--no-opt') opt = 'disabled';
    else if (a === '--config') {
      /* a session config entry, e.g. session.x64quantprecision=1 */
      const kv = v(), eq = kv.indexOf('=');
      if (eq <= 0) usage(2);
      config[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    else if (a === '-h' || a === '--help') usage(0);
    else usage(2);
  }
  if (!spec || !models.length || !(reps >= 0) || !(threads >= 1)) usage(2);
  const feeds = loadInputs(spec);
  const opts = { intraOpNumThreads: threads, interOpNumThreads: 1,
                 executionMode: 'sequential', graphOptimizationLevel: opt };
  /* extra: nested objects, their keys joined with '.' into config entries */
  for (const [k, val] of Object.entries(config)) {
    let o = (opts.extra = opts.extra || {});
    const parts = k.split('.');
    for (const p of parts.slice(0, -1)) o = (o[p] = o[p] || {});
    o[parts[parts.length - 1]] = val;
  }
  const sessions = [];
  for (const m of models) sessions.push(await ort.InferenceSession.create(m, opts));
  const times = models.map(() => []);
  const results = [];
  for (let k = 0; k < sessions.length; k++) results.push(await sessions[k].run(feeds));
  for (let r = 0; r < reps; r++)        // interleaved rounds
    for (let k = 0; k < sessions.length; k++) {
      const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
      await sessions[k].run(feeds);
      const c = process.cpuUsage(c0);
      times[k].push(cpu ? c.user + c.system : Number(process.hrtime.bigint() - t0) / 1e3);
    }
  if (out) fs.mkdirSync(out, { recursive: true });
  for (let k = 0; k < models.length; k++) {
    const outs = [];
    for (const name of sessions[k].outputNames) {
      const t = results[k][name];
      const suf = t.type === 'float32' ? 'f32' : t.type === 'int64' ? 'i64' : t.type;
      let file = null;
      if (out) {
        file = path.join(out, `${path.basename(models[k], '.onnx')}.${name}.${suf}`);
        fs.writeFileSync(file, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      }
      outs.push({ name, dtype: t.type, shape: t.dims, file });
    }
    const ts = times[k].sort((a, b) => a - b);
    console.log(JSON.stringify({ model: models[k], threads, reps, clock: cpu ? 'cpu' : 'wall',
      median_us: reps ? +ts[ts.length >> 1].toFixed(1) : null,
      min_us: reps ? +ts[0].toFixed(1) : null, outputs: outs }));
  }
}

main().catch((e) => { console.error(`run.js: ${e.message || e}`); process.exit(1); });
