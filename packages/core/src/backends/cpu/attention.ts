import { runRows } from './rows.ts';
import type { Alloc, FArr } from './arrays.ts';
import { arenaFree } from './arena.ts';

/** Gives a scratch [tq, tk] tensor back now (an arena view is otherwise released only when collected; others are left to the GC). */
const drop = (x: FArr): boolean => arenaFree(x);

/** Batched matmul as the cpu backend runs it: [bh, m, k] x [bh, k, n] with transpose flags. */
export type BatchedMatmul = (a: FArr, aShape: number[], b: FArr, bShape: number[], ta: boolean, tb: boolean, out: number[]) => FArr;

/** Attention as three batched gemms and a row softmax: the gemms run on the fast matmul path. */
export function attentionForward(
  alloc: Alloc, mm: BatchedMatmul, q: FArr, k: FArr, v: FArr,
  bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean,
): { out: FArr; lse: FArr } {
  const p = mm(q, [bh, tq, dk], k, [bh, tk, dk], false, true, [bh, tq, tk]);
  const lse = alloc(bh * tq);
  runRows('attention', 'attentionSoftmaxRows', [p, lse], [tq, tk, scale, causal ? 1 : 0], bh * tq, bh * tq * tk);
  const out = mm(p, [bh, tq, tk], v, [bh, tk, dv], false, false, [bh, tq, dv]);
  drop(p);
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
  runRows('attention', 'attentionProbsRows', [p, lse], [tq, tk, scale, causal ? 1 : 0], bh * tq, bh * tq * tk);
  const dvOut = need.v ? mm(p, [bh, tq, tk], dout, [bh, tq, dv], true, false, [bh, tk, dv]) : null;
  if (!need.q && !need.k) {
    drop(p);
    return { dq: null, dk: null, dv: dvOut };
  }
  const ds = mm(dout, [bh, tq, dv], v, [bh, tk, dv], false, true, [bh, tq, tk]);
  runRows('attention', 'attentionScoreGradRows', [ds, p, dout, out], [tk, dv, scale], bh * tq, bh * tq * (tk + dv));
  const dq = need.q ? mm(ds, [bh, tq, tk], k, [bh, tk, dk], false, false, [bh, tq, dk]) : null;
  const dkOut = need.k ? mm(ds, [bh, tq, tk], q, [bh, tq, dk], true, false, [bh, tk, dk]) : null;
  drop(p);
  drop(ds);
  return { dq, dk: dkOut, dv: dvOut };
}
