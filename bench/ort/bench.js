#!/usr/bin/env node
// Times the dynq-bench GEMM shapes through ONNX Runtime, one thread:
// FP32 MatMul+Add and com.microsoft.DynamicQuantizeMatMul (ORT's dynamic
// INT8), on graphs written by make_models.py.  Medians in microseconds,
// including Node's per-call overhead (~15 us), which dynq-bench does not pay.
//
// usage: node bench.js MODEL_DIR [--shape MxKxN]... [--json]
// (onnxruntime-node is found through NODE_PATH or a node_modules beside
// this file; see BENCHMARKS.md for the offline install.)
'use strict';

const path = require('path');
const ort = require('onnxruntime-node');

const DEFAULT_M = [1, 4, 16, 64, 256];
const DEFAULT_KN = [[768, 768], [768, 3072], [3072, 768], [4096, 4096]];
const TARGET_NS = 300e6;

function usage(code) {
  console.error('usage: node bench.js MODEL_DIR [--shape MxKxN]... [--json]');
  process.exit(code);
}

function normal(n) {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - Math.random(), v = Math.random();
    x[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return x;
}

async function median(session, feeds) {
  await session.run(feeds);   // warm-up
  let t0 = process.hrtime.bigint();
  await session.run(feeds);
  const one = Number(process.hrtime.bigint() - t0);
  const reps = Math.max(5, Math.min(2000, Math.floor(TARGET_NS / Math.max(one, 1))));
  const t = [];
  for (let i = 0; i < reps; i++) {
    t0 = process.hrtime.bigint();
    await session.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  t.sort((a, b) => a - b);
  return t[reps >> 1];
}

async function main() {
  const args = process.argv.slice(2);
  let dir = null, json = false;
  const shapes = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') usage(0);
    else if (a === '--shape') {
      const m = /^(\d+)x(\d+)x(\d+)$/.exec(args[++i] || '');
      if (!m) usage(2);
      shapes.push([+m[1], +m[2], +m[3]]);
    } else if (!dir) dir = a;
    else usage(2);
  }
  if (!dir) usage(2);
  if (!shapes.length)
    for (const m of DEFAULT_M) for (const [k, n] of DEFAULT_KN) shapes.push([m, k, n]);

  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1,
                 executionMode: 'sequential', graphOptimizationLevel: 'all' };
  const cache = new Map();
  async function load(name) {
    if (!cache.has(name)) cache.set(name, await ort.InferenceSession.create(path.join(dir, name), opts));
    return cache.get(name);
  }
  if (!json)
    console.log(`onnxruntime-node ${require('onnxruntime-node/package.json').version}, 1 thread\n` +
                '     M      K      N      dq_us    fp32_us  speedup     GOPS    relL2');
  for (const [m, k, n] of shapes) {
    const fp = await load(`fp32_${k}x${n}.onnx`);
    const dq = await load(`dq_${k}x${n}.onnx`);
    const feeds = { X: new ort.Tensor('float32', normal(m * k), [m, k]) };
    const tf = await median(fp, feeds);
    const td = await median(dq, feeds);
    const yf = (await fp.run(feeds)).Y.data, yd = (await dq.run(feeds)).Y.data;
    let num = 0, den = 0;
    for (let i = 0; i < yf.length; i++) { const d = yd[i] - yf[i]; num += d * d; den += yf[i] * yf[i]; }
    const err = Math.sqrt(num / den), gops = 2 * m * k * n / td / 1e3;
    if (json)
      console.log(JSON.stringify({ m, k, n, system: 'ort-DynamicQuantizeMatMul', threads: 1,
        int8_us: +td.toFixed(2), fp32_us: +tf.toFixed(2), fp32_routine: 'ort-MatMul',
        speedup: +(tf / td).toFixed(3), gops: +gops.toFixed(1), rel_l2: +err.toFixed(5) }));
    else
      console.log(`${String(m).padStart(6)} ${String(k).padStart(6)} ${String(n).padStart(6)} ` +
                  `${td.toFixed(2).padStart(10)} ${tf.toFixed(2).padStart(10)} ` +
                  `${(tf / td).toFixed(2).padStart(7)}x ${gops.toFixed(1).padStart(8)} ${err.toFixed(5).padStart(8)}`);
  }
}

main().catch((e) => { console.error(`bench.js: ${e.message || e}`); process.exit(1); });
