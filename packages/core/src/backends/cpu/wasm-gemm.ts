import { ensureBytes, simdModule, type WasmExports } from './wasm-module.ts';
import { GEMM_WASM_BASE64 } from './gemm-wasm.ts';

interface GemmExports extends WasmExports {
  gemm(
    m: number, n: number, k: number,
    a: number, sAm: number, sAk: number,
    b: number, sBk: number, sBn: number,
    c: number, ws: number, mcBlock: number, kcBlock: number, ncBlock: number,
  ): void;
}

/** Cache blocking (tuned on Zen 5): an MC x KC block of A stays in L2, a KC x 8 panel of B in L1. */
const MC = 128;
const KC = 512;
const NC = 1024;
/** Bytes 0..127 are the kernel's scratch tile; the packing workspace follows. */
const WS = 128;
const WS_BYTES = (MC + NC) * KC * 4;
/**
 * Below this many multiply-adds the JS gemm is as fast (measured crossover
 * 512..4096, where either takes about a microsecond).
 */
export const WASM_GEMM_MIN_MACS = 2048;

const load = simdModule<GemmExports>(GEMM_WASM_BASE64);

/** Whether the WebAssembly SIMD gemm can run here. */
export function wasmGemmAvailable(): boolean {
  return load() !== null;
}

const align16 = (x: number): number => Math.ceil(x / 16) * 16;

/**
 * C[bi*m*n + i*n + j] = sum_p A[aOffsets[bi] + i*sAm + p*sAk] * B[bOffsets[bi] + p*sBk + j*sBn]
 * for every batch bi, in float32 with WebAssembly SIMD. Strides are in elements:
 * a transposed operand is a swap of its strides, handled while packing.
 * Returns false, leaving C alone, where WebAssembly SIMD is unavailable or the
 * operands do not fit in 2 GiB of wasm memory: the caller falls back to the JS gemm.
 * @example gemmWasm(2, 2, 2, a, [0], 2, 1, b, [0], 2, 1, c) // c = a @ b, 2x2
 */
export function gemmWasm(
  m: number, n: number, k: number,
  A: Float32Array, aOffsets: readonly number[], sAm: number, sAk: number,
  B: Float32Array, bOffsets: readonly number[], sBk: number, sBn: number,
  C: Float32Array,
): boolean {
  const w = load();
  if (w === null) return false;
  const batches = aOffsets.length;
  if (m === 0 || n === 0) return true;
  if (k === 0) {
    C.fill(0, 0, batches * m * n);
    return true;
  }
  const aPtr = align16(WS + WS_BYTES);
  const bPtr = align16(aPtr + A.length * 4);
  const cPtr = align16(bPtr + B.length * 4);
  const end = cPtr + batches * m * n * 4;
  if (!ensureBytes(w.memory, end)) return false;
  const heap = new Float32Array(w.memory.buffer);
  heap.set(A, aPtr / 4);
  heap.set(B, bPtr / 4);
  for (let bi = 0; bi < batches; bi++) {
    w.gemm(
      m, n, k,
      aPtr + aOffsets[bi] * 4, sAm, sAk,
      bPtr + bOffsets[bi] * 4, sBk, sBn,
      cPtr + bi * m * n * 4, WS, MC, KC, NC,
    );
  }
  C.set(heap.subarray(cPtr / 4, cPtr / 4 + batches * m * n));
  return true;
}
