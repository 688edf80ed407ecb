import { ensureBytes, simdModule, type WasmExports } from './wasm-module.ts';
import { ACTIVATIONS_WASM_BASE64 } from './activations-wasm.ts';

interface ActivationExports extends WasmExports {
  gelu(x: number, out: number, n4: number): void;
  geluGrad(x: number, dy: number, out: number, n4: number): void;
}

const load = simdModule<ActivationExports>(ACTIVATIONS_WASM_BASE64);

/** Room for `arrays` arrays of n floats (each padded to whole 4-lane vectors); their byte offsets. */
function reserve(w: ActivationExports, n: number, arrays: number): number[] | null {
  const stride = Math.ceil(n / 4) * 16;
  if (!ensureBytes(w.memory, stride * arrays)) return null;
  return Array.from({ length: arrays }, (_, i) => i * stride);
}

/** out = gelu(x) on the SIMD kernel; false when WebAssembly SIMD is unavailable. */
export function geluWasm(x: Float32Array, out: Float32Array): boolean {
  const w = load();
  const at = w && reserve(w, x.length, 2);
  if (!w || !at) return false;
  const heap = new Float32Array(w.memory.buffer);
  heap.set(x, at[0] / 4);
  w.gelu(at[0], at[1], Math.ceil(x.length / 4));
  out.set(heap.subarray(at[1] / 4, at[1] / 4 + x.length));
  return true;
}

/** out = dy * gelu'(x) on the SIMD kernel; false when WebAssembly SIMD is unavailable. */
export function geluGradWasm(x: Float32Array, dy: Float32Array, out: Float32Array): boolean {
  const w = load();
  const at = w && reserve(w, x.length, 3);
  if (!w || !at) return false;
  const heap = new Float32Array(w.memory.buffer);
  heap.set(x, at[0] / 4);
  heap.set(dy.subarray(0, x.length), at[1] / 4);
  w.geluGrad(at[0], at[1], at[2], Math.ceil(x.length / 4));
  out.set(heap.subarray(at[2] / 4, at[2] / 4 + x.length));
  return true;
}
