import { BF16Array, F16Array, f16BitsToNumber, type HalfArr } from './half.ts';
import { runParallel, threadsFor } from './threads.ts';
import {
  KC, MC, NC, align16, ensureBytes, ensureF16Table, operandBase, wasmRuntime, workspaceOf, type WasmRuntime,
} from './wasm-module.ts';
import { JOB_GEMM } from './worker-source.ts';

/**
 * Below this many multiply-adds the JS gemm is as fast (measured crossover
 * 512..4096, where either takes about a microsecond).
 */
export const WASM_GEMM_MIN_MACS = 2048;
/** Below this many multiply-adds one thread does the whole product: waking workers costs tens of microseconds. */
export const PARALLEL_GEMM_MIN_MACS = 1 << 18;

/** A gemm's B operand: float32, or a 16-bit weight widened while it is packed. */
export type GemmB = Float32Array | HalfArr;

/** Whether the WebAssembly SIMD gemm can run here. */
export function wasmGemmAvailable(): boolean {
  return wasmRuntime() !== null;
}

/** One thread's piece of a product: rows [r0, r1) x columns [c0, c1) of batch bi. */
interface Tile { bi: number; r0: number; r1: number; c0: number; c1: number }

/** Splits [0, units) into `parts` contiguous ranges, the first ones one longer. */
function split(units: number, parts: number): [number, number][] {
  const out: [number, number][] = [];
  for (let p = 0, at = 0; p < parts; p++) {
    const len = Math.floor(units / parts) + (p < units % parts ? 1 : 0);
    out.push([at, at + len]);
    at += len;
  }
  return out;
}

/**
 * Each thread's tiles: whole batches when there are at least as many as
 * threads, else every batch cut along its longer side (in 4-row or 8-column
 * micro-tile units). Each output element is still summed over k in one fixed
 * order (the k-blocks in turn), so any cut gives bit-identical results.
 */
export function planTiles(batches: number, m: number, n: number, threads: number): Tile[][] {
  if (threads === 1) return [Array.from({ length: batches }, (_, bi) => ({ bi, r0: 0, r1: m, c0: 0, c1: n }))];
  if (batches >= threads) {
    return split(batches, threads).map(([b0, b1]) =>
      Array.from({ length: b1 - b0 }, (_, i) => ({ bi: b0 + i, r0: 0, r1: m, c0: 0, c1: n })));
  }
  const rowUnits = Math.ceil(m / 4);
  const colUnits = Math.ceil(n / 8);
  const byRows = rowUnits >= colUnits;
  const pieces = split(byRows ? rowUnits : colUnits, threads);
  return pieces.map(([u0, u1]) => {
    const tiles: Tile[] = [];
    if (u1 === u0) return tiles;
    for (let bi = 0; bi < batches; bi++) {
      tiles.push(byRows
        ? { bi, r0: u0 * 4, r1: Math.min(m, u1 * 4), c0: 0, c1: n }
        : { bi, r0: 0, r1: m, c0: u0 * 8, c1: Math.min(n, u1 * 8) });
    }
    return tiles;
  });
}

const DESC_WORDS = 16;

function runDescriptors(rt: WasmRuntime, d: Int32Array, from: number, count: number): void {
  for (let i = from * DESC_WORDS; i < (from + count) * DESC_WORDS; i += DESC_WORDS) {
    rt.gemm.gemm(d[i], d[i + 1], d[i + 2], d[i + 3], d[i + 4], d[i + 5], d[i + 6], d[i + 7],
      d[i + 8], d[i + 9], d[i + 10], d[i + 11], d[i + 12], d[i + 13], d[i + 14], d[i + 15]);
  }
}

/**
 * C[bi*m*n + i*n + j] = sum_p A[aOffsets[bi] + i*sAm + p*sAk] * B[bOffsets[bi] + p*sBk + j*sBn]
 * for every batch bi, in float32 with WebAssembly SIMD, on `threads` threads
 * (default: the pool's count above a size threshold). Strides are in
 * elements: a transposed operand is a swap of its strides, handled while
 * packing; a 16-bit B is widened there too. Returns false, leaving C alone,
 * where WebAssembly SIMD is unavailable or the operands do not fit in 2 GiB
 * of wasm memory: the caller falls back to the JS gemm.
 * @example gemmWasm(2, 2, 2, a, [0], 2, 1, b, [0], 2, 1, c) // c = a @ b, 2x2
 */
export function gemmWasm(
  m: number, n: number, k: number,
  A: Float32Array, aOffsets: readonly number[], sAm: number, sAk: number,
  B: GemmB, bOffsets: readonly number[], sBk: number, sBn: number,
  C: Float32Array, threads?: number,
): boolean {
  const rt = wasmRuntime();
  if (rt === null) return false;
  const batches = aOffsets.length;
  if (m === 0 || n === 0) return true;
  if (k === 0) {
    C.fill(0, 0, batches * m * n);
    return true;
  }
  const T = threads ?? threadsFor(batches * m * n * k, PARALLEL_GEMM_MIN_MACS);
  const bmode = B instanceof BF16Array ? 1 : B instanceof F16Array ? 2 : 0;
  const bBytes = B.BYTES_PER_ELEMENT;
  const plan = planTiles(batches, m, n, T);
  const tiles = plan.reduce((s, p) => s + p.length, 0);
  const aPtr = operandBase(T);
  const bPtr = align16(aPtr + A.length * 4);
  const cPtr = align16(bPtr + B.length * bBytes);
  const dPtr = align16(cPtr + batches * m * n * 4);
  const end = dPtr + tiles * DESC_WORDS * 4;
  if (!ensureBytes(rt.memory, end)) return false;
  if (bmode === 2) ensureF16Table(rt, f16BitsToNumber);
  const buf = rt.memory.buffer;
  new Float32Array(buf, aPtr, A.length).set(A);
  if (bmode === 0) new Float32Array(buf, bPtr, B.length).set(B);
  else new Uint16Array(buf, bPtr, B.length).set(B);
  const d = new Int32Array(buf, dPtr, tiles * DESC_WORDS);
  const starts: number[] = [];
  let at = 0;
  plan.forEach((list, t) => {
    starts.push(at);
    for (const { bi, r0, r1, c0, c1 } of list) {
      d.set([
        r1 - r0, c1 - c0, k,
        aPtr + (aOffsets[bi] + r0 * sAm) * 4, sAm, sAk,
        bPtr + (bOffsets[bi] + c0 * sBn) * bBytes, sBk, sBn,
        cPtr + (bi * m * n + r0 * n + c0) * 4, n, workspaceOf(t), MC, KC, NC, bmode,
      ], at * DESC_WORDS);
      at++;
    }
  });
  starts.push(at);
  const ran = plan.length > 1 && runParallel('matmul', plan.length, (ctl, s, t) => {
    ctl[s + 2] = JOB_GEMM;
    ctl[s + 3] = dPtr + starts[t] * DESC_WORDS * 4;
    ctl[s + 4] = starts[t + 1] - starts[t];
  }, () => runDescriptors(rt, d, 0, starts[1]));
  if (!ran) runDescriptors(rt, d, 0, tiles);
  C.set(new Float32Array(rt.memory.buffer, cPtr, batches * m * n));
  return true;
}
