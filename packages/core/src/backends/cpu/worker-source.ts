import { ROW_KERNEL_LIST } from './row-kernels.ts';

/**
 * The source of a cpu-backend worker, as a string: Node runs it with
 * `new Worker(src, { eval: true })`, a browser from a Blob URL, so no file
 * has to be found at runtime and no TypeScript loader is needed in the worker.
 *
 * Protocol: a job is a list of tiles (16-word descriptors in the shared
 * memory). Threads claim tiles one at a time from the CLAIM word (generation
 * in the high bits, next tile in the low ones) with compareExchange, so a
 * thread that the OS does not schedule simply claims nothing and the others
 * (the calling thread included) do its share. Each finished tile bumps DONE;
 * the thread that finishes the last one wakes the caller. A worker sleeps on
 * GEN between jobs. A failure's message goes to the worker's error area as a
 * length and UTF-16 code units, and FAILED names the worker (index + 1).
 */
export const CTL_GEN = 0;
export const CTL_KIND = 2;
export const CTL_COUNT = 3;
export const CTL_DESC = 4;
export const CTL_CLAIM = 5;
export const CTL_DONE = 6;
export const CTL_FAILED = 7;
/** Per-worker words: READY + i (1 once booted, 2 if booting failed), QUIT + i (1: exit). */
export const CTL_READY = 64;
export const CTL_QUIT = 256;
export const CTL_WORDS = 512;
export const MAX_WORKERS = 63;
export const ERROR_BASE = CTL_WORDS * 4;
export const ERROR_BYTES = 512;
/** CLAIM = (generation << TILE_BITS) | next tile. */
export const TILE_BITS = 12;
export const MAX_TILES = (1 << TILE_BITS) - 1;
export const GEN_MASK = (1 << (32 - TILE_BITS)) - 1;
export const DESC_WORDS = 16;

export const JOB_GEMM = 1;
export const JOB_GELU = 2;
export const JOB_GELU_GRAD = 3;
/** A row kernel of row-kernels.ts; the job's header is described at ROW_HEADER_WORDS. */
export const JOB_ROWS = 4;
/**
 * A row job's header (Int32 words at the job's desc): kernel, units, tiles,
 * array count, then (byte offset, length, type) per array, type 0 absent,
 * 1 float32, 2 int32, 3 float64; the kernel's numbers follow as float64 at
 * byte ROW_HEADER_WORDS * 4. Tile i runs units [floor(i u / n), floor((i + 1) u / n)).
 */
export const ROW_HEADER_WORDS = 32;
export const ROW_MAX_ARRAYS = 9;
export const ROW_MAX_SCALARS = 8;
/** Test hook: the tile throws, as a kernel bug would. */
export const JOB_FAIL = 99;

export const WORKER_SOURCE = `'use strict';
const ROW_KERNELS = [
${ROW_KERNEL_LIST.map(String).join(',\n')}
];
const C = { GEN: ${CTL_GEN}, KIND: ${CTL_KIND}, COUNT: ${CTL_COUNT}, DESC: ${CTL_DESC}, CLAIM: ${CTL_CLAIM},
  DONE: ${CTL_DONE}, FAILED: ${CTL_FAILED}, READY: ${CTL_READY}, QUIT: ${CTL_QUIT}, WORDS: ${CTL_WORDS} };
const ERROR_BASE = ${ERROR_BASE}, ERROR_BYTES = ${ERROR_BYTES}, TILE_BITS = ${TILE_BITS}, TILE_MASK = ${MAX_TILES};
const GEN_MASK = ${GEN_MASK}, DESC_WORDS = ${DESC_WORDS};
function start(d) {
  const memory = d.memory;
  const me = d.index;
  const ctl = new Int32Array(memory.buffer, 0, C.WORDS);
  const report = (e) => {
    const msg = String(e && e.message ? e.message : e).slice(0, ERROR_BYTES / 2 - 2);
    const u16 = new Uint16Array(memory.buffer, ERROR_BASE + me * ERROR_BYTES, ERROR_BYTES / 2);
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
    Atomics.store(ctl, C.READY + me, 2);
    return;
  }
  Atomics.store(ctl, C.READY + me, 1);
  // A row job's header, scalars and array views, read once per job (not per tile).
  let job = null;
  const rowJob = (desc) => {
    const h = new Int32Array(memory.buffer, desc, ${ROW_HEADER_WORDS});
    const nums = new Float64Array(memory.buffer, desc + ${ROW_HEADER_WORDS * 4}, ${ROW_MAX_SCALARS});
    const views = [];
    for (let a = 0; a < h[3]; a++) {
      const at = h[4 + 3 * a], len = h[5 + 3 * a], type = h[6 + 3 * a];
      views.push(type === 0 ? null : new (type === 1 ? Float32Array : type === 2 ? Int32Array : Float64Array)(memory.buffer, at, len));
    }
    return { kernel: ROW_KERNELS[h[0]], nums, views, units: h[1], count: h[2] };
  };
  const tile = (kind, desc, i) => {
    if (kind === ${JOB_ROWS}) {
      job ??= rowJob(desc);
      job.kernel(job.views, job.nums, Math.floor(i * job.units / job.count), Math.floor((i + 1) * job.units / job.count));
      return;
    }
    const w = new Int32Array(memory.buffer, desc + i * DESC_WORDS * 4, DESC_WORDS);
    if (kind === ${JOB_GEMM}) {
      gemm(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], d.workspace, w[12], w[13], w[14], w[15]);
    } else if (kind === ${JOB_GELU}) {
      act.gelu(w[0], w[1], w[2]);
    } else if (kind === ${JOB_GELU_GRAD}) {
      act.geluGrad(w[0], w[1], w[2], w[3]);
    } else if (kind === ${JOB_FAIL}) {
      throw new Error('deliberate failure (test hook)');
    } else {
      throw new Error('unknown job ' + kind);
    }
  };
  let seen = -1;
  for (;;) {
    if (Atomics.load(ctl, C.QUIT + me) !== 0) return;
    const g = Atomics.load(ctl, C.GEN);
    if (g === seen) {
      Atomics.wait(ctl, C.GEN, g);
      continue;
    }
    seen = g;
    job = null;
    const kind = ctl[C.KIND], count = ctl[C.COUNT], desc = ctl[C.DESC];
    for (;;) {
      const c = Atomics.load(ctl, C.CLAIM);
      if ((c >>> TILE_BITS) !== (g & GEN_MASK)) break;
      const i = c & TILE_MASK;
      if (i >= count) break;
      if (Atomics.compareExchange(ctl, C.CLAIM, c, c + 1) !== c) continue;
      try {
        tile(kind, desc, i);
      } catch (e) {
        report(e);
        Atomics.store(ctl, C.FAILED, me + 1);
      }
      if (Atomics.add(ctl, C.DONE, 1) + 1 === count) Atomics.notify(ctl, C.DONE);
    }
  }
}
if (typeof require === 'function') {
  start(require('node:worker_threads').workerData);
} else {
  self.onmessage = (e) => start(e.data);
}
`;
