import { runRows } from './rows.ts';
import type { Alloc, Args, FArr } from './arrays.ts';
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

/** [B, T, H, D] -> [B, H, T, D] (`toHeadMajor`), or back, into a fresh array. */
function swapHeads(alloc: Alloc, x: FArr, B: number, T: number, H: number, D: number, toHeadMajor: boolean): FArr {
  const out = alloc(x.length);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const thd = ((b * T + t) * H + h) * D;
        const htd = ((b * H + h) * T + t) * D;
        if (toHeadMajor) out.set(x.subarray(thd, thd + D), htd);
        else out.set(x.subarray(htd, htd + D), thd);
      }
    }
  }
  return out;
}

/** The attention kernel; a [B, T, heads, D] layout is moved to [bh, T, D] around it (the copies a permute made before). */
export function attentionKernel(alloc: Alloc, mm: BatchedMatmul, { inputs: { q, k, v }, attrs }: Args<'attention'>): { out: FArr; lse: FArr } {
  const { bh, tq, tk, dk, dv, scale, causal, heads } = attrs;
  if (!heads) return attentionForward(alloc, mm, q, k, v, bh, tq, tk, dk, dv, scale, causal);
  const B = bh / heads;
  const sw = (x: FArr, t: number, d: number, to: boolean): FArr => swapHeads(alloc, x, B, t, heads, d, to);
  const [q2, k2, v2] = [sw(q, tq, dk, true), sw(k, tk, dk, true), sw(v, tk, dv, true)];
  const r = attentionForward(alloc, mm, q2, k2, v2, bh, tq, tk, dk, dv, scale, causal);
  const out = sw(r.out, tq, dv, false);
  for (const t of [q2, k2, v2, r.out]) drop(t);
  return { out, lse: r.lse };
}

/** The attention backward kernel, with the same layout moves as `attentionKernel`. */
export function attentionGradKernel(
  alloc: Alloc, mm: BatchedMatmul, { inputs: { q, k, v, out, lse, dout }, attrs }: Args<'attentionGrad'>,
): { dq: FArr | null; dk: FArr | null; dv: FArr | null } {
  const { bh, tq, tk, dk, dv, scale, causal, heads, need } = attrs;
  if (!heads) return attentionBackward(alloc, mm, q, k, v, out, lse, dout, bh, tq, tk, dk, dv, scale, causal, need);
  const B = bh / heads;
  const sw = (x: FArr, t: number, d: number, to: boolean): FArr => swapHeads(alloc, x, B, t, heads, d, to);
  const ins = [sw(q, tq, dk, true), sw(k, tk, dk, true), sw(v, tk, dv, true), sw(out, tq, dv, true), sw(dout, tq, dv, true)];
  const g = attentionBackward(alloc, mm, ins[0], ins[1], ins[2], ins[3], lse, ins[4], bh, tq, tk, dk, dv, scale, causal, need);
  for (const t of ins) drop(t);
  const back = (x: FArr | null, t: number, d: number): FArr | null => {
    if (!x) return null;
    const y = sw(x, t, d, false);
    drop(x);
    return y;
  };
  return { dq: back(g.dq, tq, dk), dk: back(g.dk, tk, dk), dv: back(g.dv, tk, dv) };
}
