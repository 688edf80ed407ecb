import { broadcastStrides, sizeOf, type Shape } from '../../shape.ts';
import { forEachRow, type Alloc, type Args, type FArr } from './arrays.ts';
import { isHalf, widen, type HalfArr } from './half.ts';
import { WASM_GEMM_MIN_MACS, gemmWasm } from './wasm-gemm.ts';

/**
 * The matmul kernel: alpha times the batched product, plus a bias added to every
 * output row, plus the low-rank term scale * h @ op(w) (made in a scratch array `free` takes back), plus an addend.
 */
export function matmul(
  alloc: Alloc, { inputs: { a, b, bias, h, w, addend }, attrs: { aShape, bShape, transA, transB, outShape, alpha = 1, lowRank } }: Args<'matmul', FArr | HalfArr>,
  free: (t: FArr) => void,
): FArr {
  const out = batchedProduct(alloc, a, aShape, b, bShape, transA, transB, outShape);
  if (alpha !== 1) for (let i = 0; i < out.length; i++) out[i] *= alpha;
  if (bias) {
    const n = outShape[outShape.length - 1];
    for (let o = 0; o < out.length; o += n) for (let c = 0; c < n; c++) out[o + c] += bias[c];
  }
  if (lowRank && h && w) {
    const [m, n] = outShape;
    const { r, transW, scale } = lowRank;
    const t = batchedProduct(alloc, h, [m, r], w, transW ? [n, r] : [r, n], false, transW, outShape);
    for (let i = 0; i < out.length; i++) out[i] += scale * t[i];
    free(t);
  }
  if (addend) for (let i = 0; i < out.length; i++) out[i] += addend[i];
  return out;
}

/**
 * Batched op(a) @ op(b) with broadcast batch axes: the WebAssembly SIMD gemm
 * for float32 work large enough to pay for its packing, else the JS gemm.
 * Transposes are strides; nothing is copied.
 */
export function batchedProduct(
  alloc: Alloc, a: FArr | HalfArr, aShape: Shape, b: FArr | HalfArr, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape,
): FArr {
  const r = outShape.length;
  const m = outShape[r - 2];
  const n = outShape[r - 1];
  const k = transA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  const out = alloc(sizeOf(outShape));
  const aRows = aShape[aShape.length - 2];
  const aCols = aShape[aShape.length - 1];
  const bCols = bShape[bShape.length - 1];
  const [sAm, sAk] = transA ? [1, aCols] : [aCols, 1];
  const [sBk, sBn] = transB ? [1, bCols] : [bCols, 1];
  const batch = outShape.slice(0, -2);
  const aBatch = broadcastStrides(aShape.slice(0, -2), batch).map((s) => s * aRows * aCols);
  const bBatch = broadcastStrides(bShape.slice(0, -2), batch).map((s) => s * bShape[bShape.length - 2] * bCols);
  const aOffsets: number[] = [];
  const bOffsets: number[] = [];
  // forEachRow walks all but the last axis: add a dummy one.
  forEachRow([...batch, 1], [[...aBatch, 0], [...bBatch, 0]], (_bi, [ao, bo]) => {
    aOffsets.push(ao);
    bOffsets.push(bo);
  });
  // A 16-bit A is not a case the ops produce (weights are B); widening it keeps such a call correct.
  const A = isHalf(a) ? widen(a) : a;
  const simd = out instanceof Float32Array && A instanceof Float32Array && (b instanceof Float32Array || isHalf(b))
    && out.length * k >= WASM_GEMM_MIN_MACS;
  if (simd && gemmWasm(m, n, k, A, aOffsets, sAm, sAk, b, bOffsets, sBk, sBn, out)) return out;
  // The JS gemm (small products, float64, no wasm) reads a 16-bit B through a float32 copy for this call only.
  const B = isHalf(b) ? widen(b) : b;
  aOffsets.forEach((ao, bi) => gemm(m, n, k, A, ao, sAm, sAk, B, bOffsets[bi], sBk, sBn, out, bi * m * n));
  return out;
}

/**
 * C[cOff + i*n + j] = sum_k A[aOff + i*sAm + k*sAk] * B[bOff + k*sBk + j*sBn].
 * Strided operands: a transposed input is read in place, never copied.
 * 4x4 register blocks over a k-panel that stays in cache.
 */
export function gemm(
  m: number, n: number, k: number,
  A: FArr, aOff: number, sAm: number, sAk: number,
  B: FArr, bOff: number, sBk: number, sBn: number,
  C: FArr, cOff: number,
): void {
  const KC = 256;
  const m4 = m - (m % 4);
  const n4 = n - (n % 4);
  for (let k0 = 0; k0 < k; k0 += KC) {
    const k1 = Math.min(k, k0 + KC);
    const first = k0 === 0;
    for (let i = 0; i < m4; i += 4) {
      const a0 = aOff + i * sAm;
      const a1 = a0 + sAm;
      const a2 = a1 + sAm;
      const a3 = a2 + sAm;
      for (let j = 0; j < n4; j += 4) {
        const b0 = bOff + j * sBn;
        const b1 = b0 + sBn;
        const b2 = b1 + sBn;
        const b3 = b2 + sBn;
        const c0 = cOff + i * n + j;
        const c1 = c0 + n;
        const c2 = c1 + n;
        const c3 = c2 + n;
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
        let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
        let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        if (!first) {
          c00 = C[c0]; c01 = C[c0 + 1]; c02 = C[c0 + 2]; c03 = C[c0 + 3];
          c10 = C[c1]; c11 = C[c1 + 1]; c12 = C[c1 + 2]; c13 = C[c1 + 3];
          c20 = C[c2]; c21 = C[c2 + 1]; c22 = C[c2 + 2]; c23 = C[c2 + 3];
          c30 = C[c3]; c31 = C[c3 + 1]; c32 = C[c3 + 2]; c33 = C[c3 + 3];
        }
        for (let p = k0; p < k1; p++) {
          const ka = p * sAk;
          const kb = p * sBk;
          const x0 = A[a0 + ka], x1 = A[a1 + ka], x2 = A[a2 + ka], x3 = A[a3 + ka];
          const y0 = B[b0 + kb], y1 = B[b1 + kb], y2 = B[b2 + kb], y3 = B[b3 + kb];
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        C[c0] = c00; C[c0 + 1] = c01; C[c0 + 2] = c02; C[c0 + 3] = c03;
        C[c1] = c10; C[c1 + 1] = c11; C[c1 + 2] = c12; C[c1 + 3] = c13;
        C[c2] = c20; C[c2 + 1] = c21; C[c2 + 2] = c22; C[c2 + 3] = c23;
        C[c3] = c30; C[c3 + 1] = c31; C[c3 + 2] = c32; C[c3 + 3] = c33;
      }
    }
    edges(m, n, m4, n4, k0, k1, first, A, aOff, sAm, sAk, B, bOff, sBk, sBn, C, cOff);
  }
}

/** The rows and columns left over by the 4x4 blocks. */
function edges(
  m: number, n: number, m4: number, n4: number, k0: number, k1: number, first: boolean,
  A: FArr, aOff: number, sAm: number, sAk: number,
  B: FArr, bOff: number, sBk: number, sBn: number,
  C: FArr, cOff: number,
): void {
  for (let i = 0; i < m; i++) {
    const jStart = i < m4 ? n4 : 0;
    for (let j = jStart; j < n; j++) {
      let acc = first ? 0 : C[cOff + i * n + j];
      const a = aOff + i * sAm;
      const b = bOff + j * sBn;
      for (let p = k0; p < k1; p++) acc += A[a + p * sAk] * B[b + p * sBk];
      C[cOff + i * n + j] = acc;
    }
  }
}
