/**
 * The source of a cpu-backend worker, as a string: Node runs it with
 * `new Worker(src, { eval: true })`, a browser from a Blob URL, so no file
 * has to be found at runtime and no TypeScript loader is needed in the worker.
 *
 * Protocol (Int32 words of the control block at byte 0 of the shared memory,
 * SLOT_WORDS per worker): word 0 is the state (0 idle, 1 job posted, 2 done,
 * 3 failed, 4 quit), word 1 the boot flag (1 ready, 2 failed), word 2 the job
 * code, words 3.. its arguments. A failure's message goes to the worker's
 * error area as a length and UTF-16 code units.
 */
export const SLOT_WORDS = 64;
export const MAX_WORKERS = 63;
export const ERROR_BASE = SLOT_WORDS * 4 * (MAX_WORKERS + 1);
export const ERROR_BYTES = 512;

export const JOB_GEMM = 1;
export const JOB_GELU = 2;
export const JOB_GELU_GRAD = 3;
/** Test hook: the worker throws, as a kernel bug would. */
export const JOB_FAIL = 99;

export const WORKER_SOURCE = `
'use strict';
const SLOT = ${SLOT_WORDS}, ERROR_BASE = ${ERROR_BASE}, ERROR_BYTES = ${ERROR_BYTES};
function start(d) {
  const memory = d.memory;
  const s = d.index * SLOT;
  const ctl = new Int32Array(memory.buffer, 0, SLOT * ${MAX_WORKERS + 1});
  const report = (e) => {
    const msg = String(e && e.message ? e.message : e).slice(0, ERROR_BYTES / 2 - 2);
    const u16 = new Uint16Array(memory.buffer, ERROR_BASE + d.index * ERROR_BYTES, ERROR_BYTES / 2);
    u16[0] = msg.length;
    for (let i = 0; i < msg.length; i++) u16[i + 1] = msg.charCodeAt(i);
  };
  let gemm, act;
  try {
    const env = { env: { memory } };
    gemm = new WebAssembly.Instance(d.gemmModule, env).exports.gemm;
    act = new WebAssembly.Instance(d.actModule, env).exports;
  } catch (e) {
    report(e);
    Atomics.store(ctl, s + 1, 2);
    Atomics.notify(ctl, s + 1);
    return;
  }
  Atomics.store(ctl, s + 1, 1);
  Atomics.notify(ctl, s + 1);
  for (;;) {
    let st;
    while ((st = Atomics.load(ctl, s)) !== 1 && st !== 4) Atomics.wait(ctl, s, st);
    if (st === 4) return;
    try {
      run(ctl, s, memory, gemm, act);
      Atomics.store(ctl, s, 2);
    } catch (e) {
      report(e);
      Atomics.store(ctl, s, 3);
    }
    Atomics.notify(ctl, s);
  }
}
function run(ctl, s, memory, gemm, act) {
  const job = ctl[s + 2];
  if (job === ${JOB_GEMM}) {
    const count = ctl[s + 4];
    const d = new Int32Array(memory.buffer, ctl[s + 3], count * 16);
    for (let i = 0; i < count * 16; i += 16) {
      gemm(d[i], d[i + 1], d[i + 2], d[i + 3], d[i + 4], d[i + 5], d[i + 6], d[i + 7],
        d[i + 8], d[i + 9], d[i + 10], d[i + 11], d[i + 12], d[i + 13], d[i + 14], d[i + 15]);
    }
  } else if (job === ${JOB_GELU}) {
    act.gelu(ctl[s + 3], ctl[s + 4], ctl[s + 5]);
  } else if (job === ${JOB_GELU_GRAD}) {
    act.geluGrad(ctl[s + 3], ctl[s + 4], ctl[s + 5], ctl[s + 6]);
  } else if (job === ${JOB_FAIL}) {
    throw new Error('deliberate failure (test hook)');
  } else {
    throw new Error('unknown job ' + job);
  }
}
if (typeof require === 'function') {
  start(require('node:worker_threads').workerData);
} else {
  self.onmessage = (e) => start(e.data);
}
`;
