import type { BinaryOp } from '../backend.ts';
import { attach, forwardScope } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import { broadcastShapes, fmt, shapesEqual } from '../shape.ts';
import { full, type Tensor } from '../tensor.ts';
import { affine, log, neg } from './elementwise.ts';
import { backendOf, requireDtype, requireFloat, result } from './util.ts';

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor, name: string = op): Tensor {
  const be = backendOf(name, a, b);
  const shape = broadcastShapes(name, a.shape, b.shape);
  const data = runKernel(be, 'binary', shape, {
    inputs: { a: a.data_, b: b.data_ }, attrs: { op, aShape: a.shape, bShape: b.shape, outShape: shape },
  });
  return result(be, data, shape);
}

/** a + b with NumPy broadcasting: `add(x, bias)` or `add(x, 1)` */
export function add(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, 1, b);
  requireFloat('add', a, b);
  const y = binaryRaw('add', a, b);
  return attach('add', y, [a, b], (dy) => [() => dy, () => dy], []);
}

/** a - b with broadcasting. */
export function sub(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, 1, -b);
  requireFloat('sub', a, b);
  const y = binaryRaw('sub', a, b);
  return attach('sub', y, [a, b], (dy) => [() => dy, () => affine(dy, -1, 0)], []);
}

/** a * b with broadcasting. */
export function mul(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, b, 0);
  requireFloat('mul', a, b);
  const y = binaryRaw('mul', a, b);
  return attach('mul', y, [a, b], (dy) => [() => mul(dy, b), () => mul(dy, a)], [a.requiresGrad && b, b.requiresGrad && a]);
}

/** a / b with broadcasting. */
export function div(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === 'number') return affine(a, 1 / b, 0);
  requireFloat('div', a, b);
  const y = binaryRaw('div', a, b);
  return attach('div', y, [a, b], (dy) => [
    () => div(dy, b),
    () => affine(mul(dy, div(y, b)), -1, 0),
  ]);
}

/** x ** exponent for a number exponent: `powScalar(x, 2)` */
export function powScalar(x: Tensor, exponent: number): Tensor {
  requireFloat('pow', x);
  const b = backendOf('pow', x);
  const y = result(b, runKernel(b, 'powScalar', x.shape, { inputs: { x: x.data_ }, attrs: { size: x.size, exponent } }), x.shape);
  return attach('pow', y, [x], (dy) => [
    () => mul(dy, affine(powScalar(x, exponent - 1), exponent, 0)),
  ]);
}

/** x ** e, for a number or a (broadcast) tensor exponent: `pow(x, 2)` */
export function pow(x: Tensor, e: Tensor | number): Tensor {
  if (typeof e === 'number') return powScalar(x, e);
  requireFloat('pow', x, e);
  const y = binaryRaw('pow', x, e);
  return attach('pow', y, [x, e], (dy) => [
    () => mul(dy, mul(binaryRaw('pow', x, affine(e, 1, -1), 'pow'), e)),
    () => mul(dy, mul(y, log(x))),
  ]);
}

/** Elementwise maximum (gradient to the larger input; ties to a). */
export function maximum(a: Tensor, b: Tensor): Tensor {
  requireFloat('maximum', a, b);
  const y = binaryRaw('maximum', a, b);
  return attach('maximum', y, [a, b], (dy) => [
    () => where(binaryRaw('eq', y, a), dy, 0),
    () => where(binaryRaw('eq', y, a), 0, dy),
  ]);
}

/** Elementwise minimum, -maximum(-a, -b): NaN in either input gives NaN (torch.minimum). */
export function minimum(a: Tensor, b: Tensor): Tensor {
  requireFloat('minimum', a, b);
  return forwardScope(() => neg(maximum(neg(a), neg(b))));
}

/**
 * torch.clamp with number bounds (either may be omitted); NaN stays NaN and the
 * gradient passes where lo <= x <= hi: `clamp(x, -1, 1)`
 */
export function clamp(x: Tensor, lo?: number | null, hi?: number | null): Tensor {
  requireFloat('clamp', x);
  if (lo == null && hi == null) throw new Error('clamp: give at least one of min and max');
  if ((lo != null && Number.isNaN(lo)) || (hi != null && Number.isNaN(hi))) throw new Error(`clamp: bounds must not be NaN, got min ${lo}, max ${hi}`);
  return forwardScope(() => {
    let y = x;
    for (const [bound, op] of [[lo, maximum], [hi, minimum]] as const) {
      if (bound != null) y = op(y, full([], bound, { backend: x.backend.name }));
    }
    return y;
  });
}

/** 1 where a == b, else 0 (float32, no gradient). */
export function eq(a: Tensor, b: Tensor): Tensor {
  return binaryRaw('eq', a, b);
}

/** 1 where a > b, else 0 (float32, no gradient). */
export function gt(a: Tensor, b: Tensor): Tensor {
  return binaryRaw('gt', a, b);
}

/**
 * torch.where: a where cond is nonzero, else b; all three broadcast.
 * `where(mask, x, 0)`
 */
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  const given = [a, b].filter((t): t is Tensor => typeof t !== 'number');
  requireFloat('where', ...given);
  const be = backendOf('where', cond, ...given);
  const shapeOf = (t: Tensor | number): readonly number[] => (typeof t === 'number' ? [] : t.shape);
  const shape = broadcastShapes('where', cond.shape, shapeOf(a), shapeOf(b));
  // Number branches become 0-d constants, read only by the kernel.
  const ta = typeof a === 'number' ? full([], a, { backend: be.name }) : a;
  const tb = typeof b === 'number' ? full([], b, { backend: be.name }) : b;
  const data = runKernel(be, 'where', shape, {
    inputs: { cond: cond.data_, a: ta.data_, b: tb.data_ }, attrs: { cShape: cond.shape, aShape: ta.shape, bShape: tb.shape, outShape: shape },
  });
  if (ta !== a) ta.dispose();
  if (tb !== b) tb.dispose();
  const y = result(be, data, shape);
  return attach('where', y, [ta, tb], (dy) => [() => where(cond, dy, 0), () => where(cond, 0, dy)], [cond]);
}

/** x.masked_fill(mask, value): `scores.maskedFill(causalMask, -Infinity)` */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  requireDtype('maskedFill', mask, 'mask', 'bool', 'int32', 'float32');
  if (!shapesEqual(broadcastShapes('maskedFill', x.shape, mask.shape), x.shape)) {
    throw new Error(`maskedFill: mask of shape ${fmt(mask.shape)} does not broadcast to x of shape ${fmt(x.shape)}`);
  }
  return where(mask, value, x);
}
