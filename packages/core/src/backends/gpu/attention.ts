import type { Args, GpuContext, GpuData } from './context.ts';
import { glAttention, glAttentionDv, glAttentionFits } from './attention-gl.ts';
import { isGlMode } from './gpujs.ts';
import { bmm } from './matmul.ts';
import * as src from './sources.ts';

/** Scaled dot-product attention, forward and backward (P recomputed, never stored, in GL modes). */

function probs(ctx: GpuContext, q: GpuData, k: GpuData, lse: GpuData, bh: number, tq: number, tk: number, dk: number, scale: number, causal: boolean): GpuData {
  return ctx.run(src.attnProbs(ctx.gen(), bh, tq, tk, dk, causal, scale), [q, k, lse]);
}

export function attention(ctx: GpuContext, { inputs: { q, k, v }, attrs: { bh, tq, tk, dk, dv, scale, causal } }: Args<'attention'>) {
  const lse = ctx.run(src.attnLse(ctx.gen(), bh, tq, tk, dk, causal, scale), [q, k]);
  if (tk === 0) return { out: ctx.zeros(bh * tq * dv), lse };
  if (isGlMode(ctx.mode) && glAttentionFits(dk, dv, tk)) {
    const g = glAttention(bh, tq, tk, dk, dv, scale, causal, ctx.mode === 'webgl2');
    const spec: src.KernelSpec = { name: 'attention4', ...g };
    return { out: ctx.run(spec, [q, k, v, lse]), lse };
  }
  const p = probs(ctx, q, k, lse, bh, tq, tk, dk, scale, causal);
  const out = bmm(ctx, [p, v], bh, tq, tk, dv, false);
  ctx.free(p);
  return { out, lse };
}

export function attentionGrad(ctx: GpuContext, { inputs: { q, k, v, out, lse, dout }, attrs: { bh, tq, tk, dk, dv, scale, causal, need } }: Args<'attentionGrad'>) {
  // GL: P is recomputed inside dV's and dS's kernels, never stored; otherwise it is made once.
  const fused = isGlMode(ctx.mode) && glAttentionFits(dk, dv, tk) && tq > 0;
  const p = fused ? null : probs(ctx, q, k, lse, bh, tq, tk, dk, scale, causal);
  let dV: GpuData | null = null;
  if (need.v) {
    dV = p ? bmm(ctx, [p, dout], bh, tk, tq, dv, true)
      : ctx.run({ name: 'attentionDv4', ...glAttentionDv(bh, tq, tk, dk, dv, scale, causal, ctx.mode === 'webgl2') }, [q, k, lse, dout]);
  }
  let dQ: GpuData | null = null;
  let dK: GpuData | null = null;
  if (need.q || need.k) {
    const ds = p ? ctx.run(src.attnDsFused(ctx.gen(), bh, tq, tk, dv, scale), [p, dout, v, out])
      : ctx.run(src.attnDsInline(ctx.gen(), bh, tq, tk, dk, dv, scale, causal), [q, k, lse, dout, v, out]);
    if (need.q) dQ = bmm(ctx, [ds, k], bh, tq, tk, dk, false);
    if (need.k) dK = bmm(ctx, [ds, q], bh, tk, tq, dk, true);
    ctx.free(ds);
  }
  if (p) ctx.free(p);
  return { dq: dQ, dk: dK, dv: dV };
}
