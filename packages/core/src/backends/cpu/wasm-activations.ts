import { decodeBase64 } from './base64.ts';
import { ACTIVATIONS_WASM_BASE64 } from './activations-wasm.ts';

interface ActivationExports {
  memory: WebAssembly.Memory;
  gelu(x: number, out: number, n4: number): void;
  geluGrad(x: number, dy: number, out: number, n4: number): void;
}

const PAGE = 65536;
let instance: ActivationExports | null | undefined;

function load(): ActivationExports | null {
  if (instance !== undefined) return instance;
  const bytes = decodeBase64(ACTIVATIONS_WASM_BASE64);
  // NOTE: validating the module is the SIMD feature test, as for the gemm.
  if (typeof WebAssembly === 'undefined' || !WebAssembly.validate(bytes)) return (instance = null);
  instance = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as ActivationExports;
  return instance;
}

/** Room for `arrays` arrays of n floats (each padded to whole 4-lane vectors); their byte offsets. */
function reserve(w: ActivationExports, n: number, arrays: number): number[] | null {
  const stride = Math.ceil(n / 4) * 16;
  const end = stride * arrays;
  if (end > 2 ** 31) return null;
  const have = w.memory.buffer.byteLength;
  if (end > have) w.memory.grow(Math.ceil((end - have) / PAGE));
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
