import { runParallel, threadsFor } from './threads.ts';
import { wasmRuntime, type WasmRuntime } from './wasm-module.ts';
import { Scratch, arenaBuffer, inArena } from './arena.ts';
import { DESC_WORDS, JOB_GELU, JOB_GELU_GRAD, MAX_TILES } from './worker-source.ts';

/** Below this many elements GELU runs on one thread. */
export const PARALLEL_ELEMENTWISE_MIN = 1 << 16;

/** Vectors per tile at least: smaller pieces cost more to hand out than they take to compute. */
const MIN_TILE_VECTORS = 4096;

/**
 * Runs an elementwise kernel over n4 vectors on `threads` threads, as tiles of
 * whole vectors (elementwise: any split gives the same bits); run(v0, v1) runs
 * a tile here. `ptrs` are the kernel's array arguments (byte offsets); `at` is
 * free room for the descriptors.
 */
function spread(
  kernel: string, job: number, threads: number, n4: number, ptrs: number[], at: number, count: number,
  rt: WasmRuntime, run: (v0: number, v1: number) => void,
): void {
  if (threads === 1 || count < 2) {
    run(0, n4);
    return;
  }
  const per = Math.ceil(n4 / count);
  const d = new Int32Array(rt.memory.buffer, at, count * DESC_WORDS);
  for (let t = 0; t < count; t++) {
    const v0 = Math.min(n4, t * per);
    const v1 = Math.min(n4, (t + 1) * per);
    ptrs.forEach((p, i) => { d[t * DESC_WORDS + i] = p + v0 * 16; });
    d[t * DESC_WORDS + ptrs.length] = v1 - v0;
  }
  const ran = runParallel(kernel, job, threads, at, count, (t) => run(Math.min(n4, t * per), Math.min(n4, (t + 1) * per)));
  if (!ran) run(0, n4);
}

/**
 * Runs a GELU kernel over x.length elements: arrays in the shared memory in
 * place, others through scratch (the last array is the output).
 */
function geluKernel(
  job: number, arrays: Float32Array[], run: (rt: WasmRuntime, ptrs: number[], v0: number, v1: number) => void,
): boolean {
  const rt = wasmRuntime();
  if (!rt) return false;
  const n = arrays[0].length;
  const T = threadsFor(n, PARALLEL_ELEMENTWISE_MIN);
  const scratch = new Scratch();
  // Each scratch array is padded to whole 4-lane vectors (an arena block is 64-byte aligned and padded too).
  const ptrs = arrays.map((x) => scratch.place(x, Math.ceil(n / 4) * 16));
  const count = Math.min(3 * T, Math.ceil(n / 4 / MIN_TILE_VECTORS), MAX_TILES - 1);
  const at = scratch.take(count * DESC_WORDS * 4);
  try {
    if (!scratch.ok) return false;
    const buf = arenaBuffer(rt);
    arrays.forEach((x, i) => { if (i < arrays.length - 1 && !inArena(x)) new Float32Array(buf, ptrs[i], n).set(x); });
    spread('gelu', job, T, Math.ceil(n / 4), ptrs, at, count, rt, (v0, v1) => run(rt, ptrs, v0, v1));
    const out = arrays[arrays.length - 1];
    if (!inArena(out)) out.set(new Float32Array(rt.memory.buffer, ptrs[ptrs.length - 1], n));
    return true;
  } finally {
    scratch.done();
  }
}

/** out = gelu(x) on the SIMD kernel; false when WebAssembly SIMD is unavailable. */
export function geluWasm(x: Float32Array, out: Float32Array): boolean {
  return geluKernel(JOB_GELU, [x, out.subarray(0, x.length)], (rt, [px, po], v0, v1) => rt.act.gelu(px + v0 * 16, po + v0 * 16, v1 - v0));
}

/** out = dy * gelu'(x) on the SIMD kernel; false when WebAssembly SIMD is unavailable. */
export function geluGradWasm(x: Float32Array, dy: Float32Array, out: Float32Array): boolean {
  return geluKernel(JOB_GELU_GRAD, [x, dy.subarray(0, x.length), out.subarray(0, x.length)], (rt, [px, pd, po], v0, v1) =>
    rt.act.geluGrad(px + v0 * 16, pd + v0 * 16, po + v0 * 16, v1 - v0));
}
