import { BF16Array, F16Array, f16BitsToNumber, type HalfArr } from './half.ts';
import { runParallel, threadsFor } from './threads.ts';
import { KC, MC, NC, ensureF16Table, wasmRuntime, type WasmRuntime } from './wasm-module.ts';
import { Scratch, arenaBuffer, inArena, workspaceOf } from './arena.ts';
import { DESC_WORDS, JOB_GEMM, MAX_TILES } from './worker-source.ts';

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
 * The tiles of a product on `threads` threads, claimed dynamically: whole
 * batches when there are plenty, else every batch cut along its longer side
 * (in 4-row or 8-column micro-tile units) into about three pieces per thread,
 * for balance, none thinner than 16 rows or 32 columns. Each output element
 * is still summed over k in one fixed order (the k-blocks in turn), so any
 * cut, and any thread, gives bit-identical results.
 */
export function planTiles(batches: number, m: number, n: number, threads: number): Tile[] {
  const whole = (): Tile[] => Array.from({ length: batches }, (_, bi) => ({ bi, r0: 0, r1: m, c0: 0, c1: n }));
  if (threads === 1 || batches >= 2 * threads) return whole();
  const rowUnits = Math.ceil(m / 4);
  const colUnits = Math.ceil(n / 8);
  const byRows = rowUnits >= colUnits;
  const units = byRows ? rowUnits : colUnits;
  const pieces = Math.max(1, Math.min(Math.ceil((3 * threads) / batches), Math.floor(units / 4)));
  const tiles: Tile[] = [];
  for (let bi = 0; bi < batches; bi++) {
    for (const [u0, u1] of split(units, pieces)) {
      tiles.push(byRows
        ? { bi, r0: u0 * 4, r1: Math.min(m, u1 * 4), c0: 0, c1: n }
        : { bi, r0: 0, r1: m, c0: u0 * 8, c1: Math.min(n, u1 * 8) });
    }
  }
  return tiles;
}

function runTile(rt: WasmRuntime, d: Int32Array, i: number, ws: number): void {
  const o = i * DESC_WORDS;
  rt.gemm.gemm(d[o], d[o + 1], d[o + 2], d[o + 3], d[o + 4], d[o + 5], d[o + 6], d[o + 7],
    d[o + 8], d[o + 9], d[o + 10], ws, d[o + 12], d[o + 13], d[o + 14], d[o + 15]);
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
  const tiles = planTiles(batches, m, n, batches <= MAX_TILES - 1 ? T : 1);
  const cLength = batches * m * n;
  // Operands that live in the shared memory are read and written in place; others go through scratch.
  const scratch = new Scratch();
  const aPtr = scratch.place(A, A.length * 4);
  const bPtr = scratch.place(B, B.length * bBytes);
  const cPtr = scratch.place(C, cLength * 4);
  const dPtr = scratch.take(tiles.length * DESC_WORDS * 4);
  const ws0 = workspaceOf(0);
  if (!scratch.ok || ws0 < 0) {
    scratch.done();
    return false;
  }
  if (bmode === 2) ensureF16Table(rt, f16BitsToNumber);
  const buf = arenaBuffer(rt);
  if (!inArena(A)) new Float32Array(buf, aPtr, A.length).set(A);
  if (!inArena(B)) (bmode === 0 ? new Float32Array(buf, bPtr, B.length) : new Uint16Array(buf, bPtr, B.length)).set(B);
  const d = new Int32Array(buf, dPtr, tiles.length * DESC_WORDS);
  tiles.forEach(({ bi, r0, r1, c0, c1 }, i) => {
    d.set([
      r1 - r0, c1 - c0, k,
      aPtr + (aOffsets[bi] + r0 * sAm) * 4, sAm, sAk,
      bPtr + (bOffsets[bi] + c0 * sBn) * bBytes, sBk, sBn,
      cPtr + (bi * m * n + r0 * n + c0) * 4, n, 0, MC, KC, NC, bmode,
    ], i * DESC_WORDS);
  });
  try {
    const ran = T > 1 && tiles.length > 1
      && runParallel('matmul', JOB_GEMM, T, dPtr, tiles.length, (i) => runTile(rt, d, i, ws0));
    if (!ran) for (let i = 0; i < tiles.length; i++) runTile(rt, d, i, ws0);
    if (!inArena(C)) C.set(new Float32Array(rt.memory.buffer, cPtr, cLength));
  } finally {
    scratch.done();
  }
  return true;
}
