import { isFloatDtype } from '../../backend.ts';
import { SHADOW_LIMIT, type Args, type GpuContext, type GpuData } from './context.ts';
import * as src from './sources.ts';

/** The gpu elementwise kernels: fill, cast, unary (and grad), affine, powScalar, binary, where. */

export function fill(ctx: GpuContext, { attrs: { size, value, dtype } }: Args<'fill'>): GpuData {
  const host = !isFloatDtype(dtype) && size <= SHADOW_LIMIT ? new Int32Array(size).fill(value) : null;
  return ctx.run(src.fill(ctx.gen(), size, value), [], host);
}

export function cast(ctx: GpuContext, { inputs: { x }, attrs: { size, to } }: Args<'cast'>): GpuData {
  if (isFloatDtype(to) || x.host) {
    const host = !isFloatDtype(to) && x.host ? x.host.slice(0, size) : null;
    return ctx.run(src.copy(ctx.gen(), size), [x], host);
  }
  return ctx.run(src.truncate(ctx.gen(), size), [x]);
}

export function unary(ctx: GpuContext, { inputs: { x }, attrs: { op, size } }: Args<'unary'>): GpuData {
  return ctx.run(src.unary(ctx.gen(), op, size), [x]);
}

export function unaryGrad(ctx: GpuContext, { inputs: { x, y, dy }, attrs: { op, size } }: Args<'unaryGrad'>): GpuData {
  const args = [...(x ? [x] : []), ...(y ? [y] : []), dy];
  return ctx.run(src.unaryGrad(ctx.gen(), op, !!x, !!y, size), args);
}

export function affine(ctx: GpuContext, { inputs: { x }, attrs: { size, scale, shift } }: Args<'affine'>): GpuData {
  return ctx.run(src.affine(ctx.gen(), size, scale, shift), [x]);
}

export function powScalar(ctx: GpuContext, { inputs: { x }, attrs: { size, exponent } }: Args<'powScalar'>): GpuData {
  return ctx.run(src.powScalar(ctx.gen(), size, exponent), [x]);
}

export function binary(ctx: GpuContext, { inputs: { a, b }, attrs: { op, aShape, bShape, outShape } }: Args<'binary'>): GpuData {
  return ctx.run(src.binary(ctx.gen(), op, aShape, bShape, outShape), [a, b]);
}

export function where(ctx: GpuContext, { inputs: { cond, a, b }, attrs: { cShape, aShape, bShape, outShape } }: Args<'where'>): GpuData {
  return ctx.run(src.where(ctx.gen(), cShape, aShape, bShape, outShape), [cond, a, b]);
}
