import { forwardScope } from '../autograd.ts';
import { normalizeAxis } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { gt } from './binary.ts';
import { affine, clone } from './elementwise.ts';
import { matmul } from './matmul.ts';
import { arange } from './random.ts';
import { reshape, transpose } from './shape.ts';
import { requireFloat } from './util.ts';

/**
 * torch.cumsum: running sums along one axis, `cumsum(tensor([1, 2, 3]), 0)` is [1, 3, 6].
 * Derived from existing ops: rows times an upper-triangular matrix of ones, so
 * matmul's backward gives the gradient (a reversed cumsum) and every backend runs it.
 */
export function cumsum(x: Tensor, axis: number): Tensor {
  requireFloat('cumsum', x);
  const a = normalizeAxis('cumsum', axis, x.rank);
  if (x.size === 0) return clone(x);
  // The scope frees every intermediate that no backward reads; only y survives.
  return forwardScope(() => {
    const n = x.shape[a];
    const last = a === x.rank - 1 ? x : transpose(x, a, -1); // [..., n]
    const rows = reshape(last, [-1, n]); // [rows, n]
    const i = reshape(arange(n, { backend: x.backend.name }), [n, 1]);
    const j = reshape(arange(n, { backend: x.backend.name }), [1, n]);
    const upper = affine(gt(i, j), -1, 1); // [n, n]: 1 where i <= j
    const sums = reshape(matmul(rows, upper), last.shape); // y[., j] = sum over i <= j of x[., i]
    return a === x.rank - 1 ? sums : transpose(sums, a, -1);
  });
}
