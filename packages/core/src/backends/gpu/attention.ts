import type { KernelOut } from '../../backend.ts';
import type { Args, GpuContext, GpuData } from './context.ts';
import { glAttention, glAttentionDv, glAttentionFits } from './attention-gl.ts';
import { isGlMode } from './gpujs.ts';
import { bmm } from './matmul.ts';
import * as src from './sources.ts';

/** Scaled dot-product attention, forward and backward (P recomputed, never stored, in GL modes). */

function probs(ctx: GpuContext, q: GpuData, k: GpuData, lse: GpuData, bh: number, tq: number, tk: number, dk: number, scale: number, causal: boolean): GpuData {
  return ctx.run(src.attnProbs(ctx.gen(), bh, tq, tk, dk, causal, scale), [q, k, lse]);
}

/** Whether the GL kernels serve these sizes (they also read the [B, T, heads, D] layout in place). */
function fusedGl(ctx: GpuContext, dk: number, dv: number, tk: number): boolean {
  return isGlMode(ctx.mode) && glAttentionFits(dk, dv, tk);
}

/** [B, T, H, D] -> [B, H, T, D] (`toHeadMajor`) or back: the permute the other kernels need around them. */
function swapHeads(ctx: GpuContext, x: GpuData, B: number, T: number, H: number, D: number, toHeadMajor: boolean): GpuData {
  const shape = toHeadMajor ? [B, H, T, D] : [B, T, H, D];
  const strides = toHeadMajor ? [T * H * D, D, H * D, 1] : [H * T * D, D, T * D, 1];
  return ctx.run(src.strided(ctx.gen(), shape, strides, 0), [x]);
}

export function attention(ctx: GpuContext, args: Args<'attention'>): KernelOut<GpuData, 'attention'> {
  const { inputs: { q, k, v }, attrs: { bh, tq, tk, dk, dv, scale, causal, heads } } = args;
  if (heads && !(fusedGl(ctx, dk, dv, tk) && tq > 0)) {
    const B = bh / heads;
    const ins = [swapHeads(ctx, q, B, tq, heads, dk, true), swapHeads(ctx, k, B, tk, heads, dk, true), swapHeads(ctx, v, B, tk, heads, dv, true)];
    const r = attention(ctx, { inputs: { q: ins[0], k: ins[1], v: ins[2] }, attrs: { ...args.attrs, heads: undefined } });
    const out = swapHeads(ctx, r.out, B, tq, heads, dv, false);
    for (const t of [...ins, r.out]) ctx.free(t);
    return { out, lse: r.lse };
  }
  const lse = ctx.run(src.attnLse(ctx.gen(), bh, tq, tk, dk, causal, scale, heads), [q, k]);
  if (tk === 0) return { out: ctx.zeros(bh * tq * dv), lse };
  if (fusedGl(ctx, dk, dv, tk)) {
    const g = glAttention(bh, tq, tk, dk, dv, scale, causal, ctx.mode === 'webgl2', heads);
    const spec: src.KernelSpec = { name: 'attention4', ...g };
    return { out: ctx.run(spec, [q, k, v, lse]), lse };
  }
  const p = probs(ctx, q, k, lse, bh, tq, tk, dk, scale, causal);
  const out = bmm(ctx, [p, v], bh, tq, tk, dv, false);
  ctx.free(p);
  return { out, lse };
}

export function attentionGrad(ctx: GpuContext, args: Args<'attentionGrad'>): KernelOut<GpuData, 'attentionGrad'> {
  const { inputs: { q, k, v, out, lse, dout }, attrs: { bh, tq, tk, dk, dv, scale, causal, need, heads } } = args;
  // GL: P is recomputed inside dV's and dS's kernels, never stored; otherwise it is made once.
  const fused = fusedGl(ctx, dk, dv, tk) && tq > 0;
  if (heads && !fused) {
    const B = bh / heads;
    const sw = (x: GpuData, t: number, d: number): GpuData => swapHeads(ctx, x, B, t, heads, d, true);
    const ins = { q: sw(q, tq, dk), k: sw(k, tk, dk), v: sw(v, tk, dv), out: sw(out, tq, dv), lse, dout: sw(dout, tq, dv) };
    const g = attentionGrad(ctx, { inputs: ins, attrs: { ...args.attrs, heads: undefined } });
    for (const t of [ins.q, ins.k, ins.v, ins.out, ins.dout]) ctx.free(t);
    const back = (x: GpuData | null, t: number, d: number): GpuData | null => {
      if (!x) return null;
      const y = swapHeads(ctx, x, B, t, heads, d, false);
      ctx.free(x);
      return y;
    };
    return { dq: back(g.dq, tq, dk), dk: back(g.dk, tk, dk), dv: back(g.dv, tk, dv) };
  }
  const p = fused ? null : probs(ctx, q, k, lse, bh, tq, tk, dk, scale, causal);
  let dV: GpuData | null = null;
  if (need.v) {
    dV = p ? bmm(ctx, [p, dout], bh, tk, tq, dv, true)
      : ctx.run({ name: 'attentionDv4', ...glAttentionDv(bh, tq, tk, dk, dv, scale, causal, ctx.mode === 'webgl2', heads) }, [q, k, lse, dout]);
  }
  let dQ: GpuData | null = null;
  let dK: GpuData | null = null;
  if (need.q || need.k) {
    const ds = p ? ctx.run(src.attnDsFused(ctx.gen(), bh, tq, tk, dv, scale), [p, dout, v, out])
      : ctx.run(src.attnDsInline(ctx.gen(), bh, tq, tk, dk, dv, scale, causal, heads), [q, k, lse, dout, v, out]);
    if (need.q) dQ = bmm(ctx, [ds, k], bh, tq, tk, dk, false, heads);
    if (need.k) dK = bmm(ctx, [ds, q], bh, tk, tq, dk, true, heads);
    ctx.free(ds);
  }
  if (p) ctx.free(p);
  return { dq: dQ, dk: dK, dv: dV };
}
