import { runParallel, threadsFor } from './threads.ts';
import { ensureBytes, operandBase, wasmRuntime, type WasmRuntime } from './wasm-module.ts';
import { DESC_WORDS, JOB_GELU, JOB_GELU_GRAD, MAX_TILES } from './worker-source.ts';

/** Below this many elements GELU runs on one thread. */
export const PARALLEL_ELEMENTWISE_MIN = 1 << 16;

/** Room for `arrays` arrays of n floats (each padded to whole 4-lane vectors); their byte offsets. */
function reserve(rt: WasmRuntime, threads: number, n: number, arrays: number): number[] | null {
  const stride = Math.ceil(n / 4) * 16;
  const base = operandBase(threads);
  if (!ensureBytes(rt.memory, base + stride * arrays)) return null;
  // One more offset: the free room after the arrays (for the tiles' descriptors).
  return Array.from({ length: arrays + 1 }, (_, i) => base + i * stride);
}

/** Vectors per tile at least: smaller pieces cost more to hand out than they take to compute. */
const MIN_TILE_VECTORS = 4096;

/**
 * Runs an elementwise kernel over n4 vectors on `threads` threads, as tiles of
 * whole vectors (elementwise: any split gives the same bits); run(v0, v1) runs
 * a tile here. `ptrs` are the kernel's array arguments (byte offsets); `at` is
 * free room for the descriptors.
 */
function spread(
  kernel: string, job: number, threads: number, n4: number, ptrs: number[], at: number,
  rt: WasmRuntime, run: (v0: number, v1: number) => void,
): void {
  const count = Math.min(3 * threads, Math.ceil(n4 / MIN_TILE_VECTORS), MAX_TILES - 1);
  if (threads === 1 || count < 2 || !ensureBytes(rt.memory, at + count * DESC_WORDS * 4)) {
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

/** out = gelu(x) on the SIMD kernel; false when WebAssembly SIMD is unavailable. */
export function geluWasm(x: Float32Array, out: Float32Array): boolean {
  const rt = wasmRuntime();
  const T = threadsFor(x.length, PARALLEL_ELEMENTWISE_MIN);
  const at = rt && reserve(rt, T, x.length, 2);
  if (!rt || !at) return false;
  new Float32Array(rt.memory.buffer, at[0], x.length).set(x);
  spread('gelu', JOB_GELU, T, Math.ceil(x.length / 4), at.slice(0, 2), at[2], rt,
    (v0, v1) => rt.act.gelu(at[0] + v0 * 16, at[1] + v0 * 16, v1 - v0));
  out.set(new Float32Array(rt.memory.buffer, at[1], x.length));
  return true;
}

/** out = dy * gelu'(x) on the SIMD kernel; false when WebAssembly SIMD is unavailable. */
export function geluGradWasm(x: Float32Array, dy: Float32Array, out: Float32Array): boolean {
  const rt = wasmRuntime();
  const T = threadsFor(x.length, PARALLEL_ELEMENTWISE_MIN);
  const at = rt && reserve(rt, T, x.length, 3);
  if (!rt || !at) return false;
  const buf = rt.memory.buffer;
  new Float32Array(buf, at[0], x.length).set(x);
  new Float32Array(buf, at[1], x.length).set(dy.subarray(0, x.length));
  spread('gelu', JOB_GELU_GRAD, T, Math.ceil(x.length / 4), at.slice(0, 3), at[3], rt, (v0, v1) =>
    rt.act.geluGrad(at[0] + v0 * 16, at[1] + v0 * 16, at[2] + v0 * 16, v1 - v0));
  out.set(new Float32Array(rt.memory.buffer, at[2], x.length));
  return true;
}
