import type { Args, GpuContext, GpuData } from './context.ts';
import * as src from './sources.ts';

/** One Adam/AdamW update (one dispatch with multiple render targets where the mode has them). */

export function adamUpdate(ctx: GpuContext, { inputs: { p, g, m, v }, attrs: { size, hyper } }: Args<'adamUpdate'>): { p: GpuData; m: GpuData; v: GpuData } {
  const { lr, beta1, beta2, eps, weightDecay, step, decoupled } = hyper;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const hp: src.AdamParams = {
    beta1, beta2, eps, weightDecay, stepSize: lr / bc1, bc2Sqrt, decay: decoupled ? 1 - lr * weightDecay : 1,
  };
  // NOTE: not in plain 'webgl' mode, where multiple render targets need an extension a browser may lack.
  if ((ctx.mode === 'headlessgl' || ctx.mode === 'webgl2') && !m.lane && !v.lane) {
    // One dispatch: the parameter is the result, m and v the sub-kernel outputs (multiple render targets).
    const r = ctx.exec(src.adamFused(ctx.gen(), decoupled, size, hp), [p, g, m, v]);
    if (!r) return { p: ctx.wrap(null, 0), m: ctx.wrap(null, 0), v: ctx.wrap(null, 0) };
    const [nm, nv] = r.extra;
    return { p: ctx.wrap(r.out, size, null, r.owner), m: ctx.wrap(nm, size, null, r.owner), v: ctx.wrap(nv, size, null, r.owner) };
  }
  // The new m and v come from one dispatch as two lanes of one buffer, which the next step reads in place.
  const [ma, va] = [ctx.laneArg(m), ctx.laneArg(v)];
  const args = [p, g, ma.arg, va.arg];
  const np = ctx.run(src.adamParam(ctx.gen(), decoupled, size, hp, ma, va), args);
  const [nm, nv] = ctx.lanes(src.adamMV(ctx.gen(), decoupled, size, hp, ma, va), args, 2);
  return { p: np, m: nm, v: nv };
}
