#!/usr/bin/env node
// Silero VAD v5 through ONNX Runtime (CPU, FP32, one thread): the reference
// that tests/test-vad.c holds dynq to, and the ORT side of bench/vad-bench.
//
// Streaming rule (the same in tests/test-vad.c and bench/vad-*.c): the clip
// is cut into 512-sample chunks at 16 kHz (a partial tail is dropped); chunk
// i is fed as 576 samples = the last 64 samples of chunk i-1 (zeros for
// i = 0) followed by chunk i; `state` starts at zeros [2,1,128] and each
// chunk's stateN is fed back as the next chunk's state; sr = 16000.
// Samples are int16 / 32768.
//
// usage:
//   node ort_reference.js MODEL.onnx CLIP.wav > probs.txt   per-chunk probabilities
//   node ort_reference.js --bench [--passes N] MODEL.onnx CLIP.wav
//        per-chunk time (median, p90 and mean over every chunk of N passes,
//        default 5), one JSON line; includes Node's per-call overhead (~15 us)
//
// Install once (offline-style: the CPU runtime is in the npm tarball):
//   cd bench/vad && ONNXRUNTIME_NODE_INSTALL=skip npm install
// The committed tests/fixtures/vad/ort_probs.txt was made with
//   node bench/vad/ort_reference.js "$(models/fetch-silero.sh)" \
//        tests/fixtures/vad/speech.wav > tests/fixtures/vad/ort_probs.txt
'use strict';

const fs = require('fs');
const ort = require('onnxruntime-node');

const CHUNK = 512, CONTEXT = 64, RATE = 16000, HIDDEN = 128;

function die(msg) {
  console.error('ort_reference: ' + msg);
  process.exit(1);
}

// Minimal RIFF/WAVE reader: PCM16 mono 16 kHz only, every size checked.
function readWav(path) {
  const b = fs.readFileSync(path);
  if (b.length < 12 || b.toString('ascii', 0, 4) !== 'RIFF' ||
      b.toString('ascii', 8, 12) !== 'WAVE')
    die(path + ': not a RIFF/WAVE file');
  let off = 12, fmt = null, data = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4), size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (size > b.length - body) die(path + ': chunk ' + id + ' runs past the end');
    if (id === 'fmt ') {
      if (size < 16) die(path + ': fmt chunk too short');
      fmt = { tag: b.readUInt16LE(body), ch: b.readUInt16LE(body + 2),
              rate: b.readUInt32LE(body + 4), bits: b.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      data = b.subarray(body, body + size);
    }
    off = body + size + (size & 1);
  }
  if (!fmt || !data) die(path + ': missing fmt or data chunk');
  if (fmt.tag !== 1 || fmt.ch !== 1 || fmt.rate !== RATE || fmt.bits !== 16)
    die(path + ': need PCM16 mono 16 kHz (got tag ' + fmt.tag + ', ' + fmt.ch +
        ' ch, ' + fmt.rate + ' Hz, ' + fmt.bits + ' bits)');
  const n = data.length >> 1, x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = data.readInt16LE(2 * i) / 32768;
  return x;
}

// One chunk's feeds: context + chunk, the carried state, sr.
function makeInput(x, i) {
  const buf = new Float32Array(CONTEXT + CHUNK);
  const start = i * CHUNK;
  if (i > 0) buf.set(x.subarray(start - CONTEXT, start), 0);
  buf.set(x.subarray(start, start + CHUNK), CONTEXT);
  return new ort.Tensor('float32', buf, [1, CONTEXT + CHUNK]);
}

async function runClip(session, x, onChunk) {
  const nChunks = Math.floor(x.length / CHUNK);
  const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(RATE)]), []);
  let state = new ort.Tensor('float32', new Float32Array(2 * HIDDEN), [2, 1, HIDDEN]);
  for (let i = 0; i < nChunks; i++) {
    const feeds = { input: makeInput(x, i), state, sr };
    const t0 = process.hrtime.bigint();
    const out = await session.run(feeds);
    const us = Number(process.hrtime.bigint() - t0) / 1e3;
    state = out.stateN;
    onChunk(i, out.output.data[0], us);
  }
  return nChunks;
}

async function main() {
  const args = process.argv.slice(2);
  let bench = false, passes = 5;
  const pos = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--bench') bench = true;
    else if (args[i] === '--passes') {
      passes = parseInt(args[++i], 10);
      if (!(passes >= 1 && passes <= 1000)) die('--passes takes 1..1000');
    } else pos.push(args[i]);
  }
  if (pos.length !== 2)
    die('usage: node ort_reference.js [--bench [--passes N]] MODEL.onnx CLIP.wav');
  const x = readWav(pos[1]);
  const session = await ort.InferenceSession.create(pos[0], {
    intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });

  if (!bench) {
    const lines = [];
    const n = await runClip(session, x, (i, p) => lines.push(i + ' ' + p.toPrecision(9)));
    process.stdout.write('# Silero VAD v5 speech probability per 512-sample chunk (64-sample context),\n' +
      '# ONNX Runtime ' + ort.env.versions.common + ' CPU FP32, one thread; ' + n + ' chunks of ' +
      pos[1].replace(/^.*\//, '') + '\n# made by: node bench/vad/ort_reference.js MODEL.onnx CLIP.wav\n' +
      '# chunk prob\n' + lines.join('\n') + '\n');
    return;
  }
  await runClip(session, x, () => {});   // warm-up pass
  const t = [];
  for (let p = 0; p < passes; p++) await runClip(session, x, (i, pr, us) => t.push(us));
  t.sort((a, b) => a - b);
  const mean = t.reduce((a, b) => a + b, 0) / t.length;
  console.log(JSON.stringify({
    system: 'onnxruntime-node', version: ort.env.versions.common, precision: 'fp32',
    threads: 1, chunks: t.length, median_us: +t[t.length >> 1].toFixed(2),
    p90_us: +t[Math.floor(t.length * 0.9)].toFixed(2), mean_us: +mean.toFixed(2),
  }));
}

main().catch((e) => die(e && e.message ? e.message : String(e)));
