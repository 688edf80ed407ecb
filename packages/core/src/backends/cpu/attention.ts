import type { Alloc, FArr } from './arrays.ts';

/** Batched matmul as the cpu backend runs it: [bh, m, k] x [bh, k, n] with transpose flags. */
export type BatchedMatmul = (a: FArr, aShape: number[], b: FArr, bShape: number[], ta: boolean, tb: boolean, out: number[]) => FArr;

/**
 * Turns scores S [bh, tq, tk] into probabilities in place (scaled, causally
 * masked, max-subtracted) and returns each row's log-sum-exp.
 */
function softmaxScores(alloc: Alloc, s: FArr, bh: number, tq: number, tk: number, scale: number, causal: boolean): FArr {
  const lse = alloc(bh * tq);
  for (let h = 0; h < bh; h++) {
    for (let i = 0; i < tq; i++) {
      const o = (h * tq + i) * tk;
      const last = causal ? i + tk - tq : tk - 1;
      let m = -Infinity;
      for (let j = 0; j <= last; j++) {
        const v = s[o + j] * scale;
        s[o + j] = v;
        if (v > m) m = v;
      }
      let sum = 0;
      for (let j = 0; j <= last; j++) {
        const e = Math.exp(s[o + j] - m);
        s[o + j] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let j = 0; j <= last; j++) s[o + j] *= inv;
      for (let j = last + 1; j < tk; j++) s[o + j] = 0;
      lse[h * tq + i] = m + Math.log(sum);
    }
  }
  return lse;
}

/** Attention as three batched gemms and a row softmax: the gemms run on the fast matmul path. */
export function attentionForward(
  alloc: Alloc, mm: BatchedMatmul, q: FArr, k: FArr, v: FArr,
  bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean,
): { out: FArr; lse: FArr } {
  const p = mm(q, [bh, tq, dk], k, [bh, tk, dk], false, true, [bh, tq, tk]);
  const lse = softmaxScores(alloc, p, bh, tq, tk, scale, causal);
  const out = mm(p, [bh, tq, tk], v, [bh, tk, dv], false, false, [bh, tq, dv]);
  return { out, lse };
}

/**
 * Recomputes P from q, k and the saved log-sum-exp (no [tq, tk] tensor is kept
 * between forward and backward), then dV = P^T dO, dS = P (dO V^T - rowsum(dO O)),
 * dQ = dS K scale, dK = dS^T Q scale.
 */
export function attentionBackward(
  alloc: Alloc, mm: BatchedMatmul, q: FArr, k: FArr, v: FArr, out: FArr, lse: FArr, dout: FArr,
  bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean,
  need: { q: boolean; k: boolean; v: boolean },
): { dq: FArr | null; dk: FArr | null; dv: FArr | null } {
  const p = mm(q, [bh, tq, dk], k, [bh, tk, dk], false, true, [bh, tq, tk]);
  for (let h = 0; h < bh; h++) {
    for (let i = 0; i < tq; i++) {
      const o = (h * tq + i) * tk;
      const last = causal ? i + tk - tq : tk - 1;
      const l = lse[h * tq + i];
      for (let j = 0; j <= last; j++) p[o + j] = Math.exp(p[o + j] * scale - l);
      for (let j = last + 1; j < tk; j++) p[o + j] = 0;
    }
  }
  const dvOut = need.v ? mm(p, [bh, tq, tk], dout, [bh, tq, dv], true, false, [bh, tk, dv]) : null;
  if (!need.q && !need.k) return { dq: null, dk: null, dv: dvOut };
  const ds = mm(dout, [bh, tq, dv], v, [bh, tk, dv], false, true, [bh, tq, tk]);
  for (let r = 0; r < bh * tq; r++) {
    let delta = 0;
    const oo = r * dv;
    for (let d = 0; d < dv; d++) delta += dout[oo + d] * out[oo + d];
    const o = r * tk;
    for (let j = 0; j < tk; j++) ds[o + j] = p[o + j] * (ds[o + j] - delta) * scale;
  }
  const dq = need.q ? mm(ds, [bh, tq, tk], k, [bh, tk, dk], false, false, [bh, tq, dk]) : null;
  const dkOut = need.k ? mm(ds, [bh, tq, tk], q, [bh, tq, dk], true, false, [bh, tk, dk]) : null;
  return { dq, dk: dkOut, dv: dvOut };
}
