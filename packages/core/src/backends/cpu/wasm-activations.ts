import { runParallel, threadsFor } from './threads.ts';
import { ensureBytes, operandBase, wasmRuntime, type WasmRuntime } from './wasm-module.ts';
import { JOB_GELU, JOB_GELU_GRAD } from './worker-source.ts';

/** Below this many elements GELU runs on one thread. */
export const PARALLEL_ELEMENTWISE_MIN = 1 << 16;

/** Room for `arrays` arrays of n floats (each padded to whole 4-lane vectors); their byte offsets. */
function reserve(rt: WasmRuntime, threads: number, n: number, arrays: number): number[] | null {
  const stride = Math.ceil(n / 4) * 16;
  const base = operandBase(threads);
  if (!ensureBytes(rt.memory, base + stride * arrays)) return null;
  return Array.from({ length: arrays }, (_, i) => base + i * stride);
}

/** Vector ranges [v0, v1) of n4 vectors per thread; elementwise, so any split gives the same bits. */
function ranges(n4: number, threads: number): [number, number][] {
  const per = Math.ceil(n4 / threads);
  return Array.from({ length: threads }, (_, t) => [Math.min(n4, t * per), Math.min(n4, (t + 1) * per)]);
}

/** Runs an elementwise kernel over n4 vectors on `threads` threads; run(v0, v1) is the local share. */
function spread(
  kernel: string, job: number, threads: number, n4: number, ptrs: number[],
  run: (v0: number, v1: number) => void,
): void {
  const parts = ranges(n4, threads);
  const ran = threads > 1 && runParallel(kernel, threads, (ctl, s, t) => {
    const [v0, v1] = parts[t];
    ctl[s + 2] = job;
    ptrs.forEach((p, i) => { ctl[s + 3 + i] = p + v0 * 16; });
    ctl[s + 3 + ptrs.length] = v1 - v0;
  }, () => run(parts[0][0], parts[0][1]));
  if (!ran) run(0, n4);
}

/** out = gelu(x) on the SIMD kernel; false when WebAssembly SIMD is unavailable. */
export function geluWasm(x: Float32Array, out: Float32Array): boolean {
  const rt = wasmRuntime();
  const T = threadsFor(x.length, PARALLEL_ELEMENTWISE_MIN);
  const at = rt && reserve(rt, T, x.length, 2);
  if (!rt || !at) return false;
  new Float32Array(rt.memory.buffer, at[0], x.length).set(x);
  spread('gelu', JOB_GELU, T, Math.ceil(x.length / 4), at, (v0, v1) => rt.act.gelu(at[0] + v0 * 16, at[1] + v0 * 16, v1 - v0));
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
  spread('gelu', JOB_GELU_GRAD, T, Math.ceil(x.length / 4), at, (v0, v1) =>
    rt.act.geluGrad(at[0] + v0 * 16, at[1] + v0 * 16, at[2] + v0 * 16, v1 - v0));
  out.set(new Float32Array(rt.memory.buffer, at[2], x.length));
  return true;
}
