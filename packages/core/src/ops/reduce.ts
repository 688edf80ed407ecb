import type { ReduceOp } from '../backend.ts';
import { attach, forwardScope } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import { fmt, normalizeAxes, sizeOf, unbroadcastAxes, type Shape } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { eq, mul, sub } from './binary.ts';
import { affine, neg } from './elementwise.ts';
import { expand, reshape } from './shape.ts';
import { requireFloat, result } from './util.ts';

export type AxisArg = number | readonly number[] | null | undefined;

function reduced(shape: Shape, axes: readonly number[], keepdim: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdim) out.push(1);
  });
  return out;
}

function reduceRaw(op: ReduceOp, x: Tensor, axes: readonly number[], keepdim: boolean): Tensor {
  const b = x.backend;
  const shape = reduced(x.shape, axes, keepdim);
  return result(b, runKernel(b, 'reduce', shape, { inputs: { x: x.data_ }, attrs: { op, shape: x.shape, axes } }), shape);
}

/** Sum over axes (null = all): `sum(x, -1, true)` */
export function sum(x: Tensor, axis: AxisArg = null, keepdim = false): Tensor {
  requireFloat('sum', x);
  const axes = normalizeAxes('sum', axis, x.rank);
  const y = reduceRaw('sum', x, axes, keepdim);
  return attach('sum', y, [x], (dy) => [
    () => expand(reshape(dy, reduced(x.shape, axes, true)), x.shape),
  ], []);
}

/** Mean over axes (null = all). */
export function mean(x: Tensor, axis: AxisArg = null, keepdim = false): Tensor {
  requireFloat('mean', x);
  const axes = normalizeAxes('mean', axis, x.rank);
  const count = sizeOf(axes.map((a) => x.shape[a]));
  return forwardScope(() => affine(sum(x, axes, keepdim), 1 / count, 0));
}

/** Maximum over axes (values only); the gradient flows to the argmax; NaN anywhere in a slice gives NaN (torch.amax). */
export function max(x: Tensor, axis: AxisArg = null, keepdim = false): Tensor {
  requireFloat('max', x);
  const axes = normalizeAxes('max', axis, x.rank);
  if (x.size === 0) throw new Error(`max: cannot reduce an empty tensor of shape ${fmt(x.shape)}`);
  const y = reduceRaw('max', x, axes, keepdim);
  return attach('max', y, [x], (dy) => [
    () => {
      const keepShape = reduced(x.shape, axes, true);
      const yk = reshape(y, keepShape);
      const dyk = reshape(dy, keepShape);
      return mul(eq(x, yk), dyk);
    },
  ]);
}

/** Minimum over axes (values only), -max(-x); NaN anywhere in a slice gives NaN, as torch.amin. */
export function min(x: Tensor, axis: AxisArg = null, keepdim = false): Tensor {
  requireFloat('min', x);
  if (x.size === 0) throw new Error(`min: cannot reduce an empty tensor of shape ${fmt(x.shape)}`);
  return forwardScope(() => neg(max(neg(x), axis, keepdim)));
}

/** Variance over axes; unbiased (N-1) by default like torch.var. */
export function variance(x: Tensor, axis: AxisArg = null, keepdim = false, unbiased = true): Tensor {
  requireFloat('var', x);
  const axes = normalizeAxes('var', axis, x.rank);
  const count = sizeOf(axes.map((a) => x.shape[a]));
  return forwardScope(() => {
    const d = sub(x, mean(x, axes, true));
    const s = sum(mul(d, d), axes, keepdim); // d is read by the backward of d * d; nothing else is kept
    return affine(s, 1 / Math.max(count - (unbiased ? 1 : 0), 0), 0);
  });
}

/** Sums a broadcast gradient back down to `shape` (the tape's un-broadcast). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  const axes = unbroadcastAxes(g.shape, shape);
  if (axes.length === 0) return reshape(g, shape);
  return forwardScope(() => reshape(sum(g, axes, false), shape));
}
