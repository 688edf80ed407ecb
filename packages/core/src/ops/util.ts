import { isFloatDtype, type Backend, type DType } from '../backend.ts';
import { makeTensor, type Tensor } from '../tensor.ts';
import type { Shape } from '../shape.ts';

/** The common backend of an op's inputs; mixing backends is an error naming the op. */
export function backendOf(op: string, ...ts: Tensor[]): Backend {
  const b = ts[0].backend;
  for (const t of ts) {
    if (t.backend !== b) {
      throw new Error(`${op}: inputs live on different backends (${ts.map((x) => x.backend.name).join(', ')}); move them with .to()`);
    }
  }
  return b;
}

export function requireFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype === 'float32') continue;
    const hint = isFloatDtype(t.dtype) ? ` (${t.dtype} storage is read by matmul's second operand and embedding only: cast(x, 'float32') first)` : '';
    throw new Error(`${op}: expected a float32 tensor, got ${t.describe()}${hint}`);
  }
}

/** float32, or a 16-bit float where the op widens it itself (a matmul's B, an embedding table). */
export function requireFloatOrHalf(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (!isFloatDtype(t.dtype)) throw new Error(`${op}: expected a float tensor, got ${t.describe()}`);
  }
}

export function requireDtype(op: string, t: Tensor, what: string, ...dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype)) {
    throw new Error(`${op}: ${what} must be ${dtypes.join(' or ')}, got ${t.describe()}`);
  }
}

export function result(b: Backend, data: unknown, shape: Shape, dtype: DType = 'float32'): Tensor {
  return makeTensor(b, data, shape, dtype);
}
