import type { DType, UnaryOp } from '../backend.ts';
import { attach } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { backendOf, requireFloat, result } from './util.ts';

function unary(op: UnaryOp, x: Tensor, gradFrom: 'x' | 'y'): Tensor {
  requireFloat(op, x);
  const b = backendOf(op, x);
  const y = result(b, runKernel(b, 'unary', x.shape, { inputs: { x: x.data_ }, attrs: { op, size: x.size } }), x.shape);
  return attach(op, y, [x], (dy) => [
    () => {
      const data = runKernel(b, 'unaryGrad', x.shape, {
        inputs: { x: gradFrom === 'x' ? x.data_ : null, y: gradFrom === 'y' ? y.data_ : null, dy: dy.data_ }, attrs: { op, size: x.size },
      });
      return result(b, data, x.shape);
    },
  ], [gradFrom === 'x' ? x : y]);
}

/** -x: `neg(tensor([1, -2]))` */
export const neg = (x: Tensor): Tensor => unary('neg', x, 'x');
/** Square root, elementwise: `sqrt(tensor([4]))` */
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x, 'y');
/** e^x: `exp(tensor([0, 1]))` */
export const exp = (x: Tensor): Tensor => unary('exp', x, 'y');
/** Natural log: `log(tensor([1, Math.E]))` */
export const log = (x: Tensor): Tensor => unary('log', x, 'x');
export const tanh = (x: Tensor): Tensor => unary('tanh', x, 'y');
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x, 'y');
export const relu = (x: Tensor): Tensor => unary('relu', x, 'x');
/** GELU, tanh approximation (GPT-2's `gelu_new`): `gelu(x)` */
export const gelu = (x: Tensor): Tensor => unary('gelu', x, 'x');
/** x * sigmoid(x): `silu(x)` */
export const silu = (x: Tensor): Tensor => unary('silu', x, 'x');

/** x * scale + shift in one kernel: `affine(x, 2, 1)` */
export function affine(x: Tensor, scale: number, shift = 0): Tensor {
  requireFloat('affine', x);
  const b = backendOf('affine', x);
  const y = result(b, runKernel(b, 'affine', x.shape, { inputs: { x: x.data_ }, attrs: { size: x.size, scale, shift } }), x.shape);
  return attach('affine', y, [x], (dy) => [() => affine(dy, scale, 0)], []);
}

/** A copy of x's values (gradient flows through). */
export function clone(x: Tensor): Tensor {
  const b = backendOf('clone', x);
  const y = result(b, runKernel(b, 'cast', x.shape, { inputs: { x: x.data_ }, attrs: { size: x.size, to: x.dtype } }), x.shape, x.dtype);
  return attach('clone', y, [x], (dy) => [() => dy], []);
}

/** Converts dtype (no gradient): `cast(ids, 'float32')` */
export function cast(x: Tensor, dtype: DType): Tensor {
  const b = backendOf('cast', x);
  const y = result(b, runKernel(b, 'cast', x.shape, { inputs: { x: x.data_ }, attrs: { size: x.size, to: dtype } }), x.shape, dtype);
  if (dtype !== 'float32' || x.dtype !== 'float32') return y;
  return attach('cast', y, [x], (dy) => [() => dy], []);
}
