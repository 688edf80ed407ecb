import { attach, forwardScope } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import { fmt, normalizeAxis } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { reshape } from './shape.ts';
import { backendOf, requireDtype, requireFloat, requireFloatOrHalf, result } from './util.ts';

/**
 * torch.gather (numpy take_along_axis): out[i][j] = x[i][index[i][j]] for axis 1.
 * `gather(x, idx, 1)`
 */
export function gather(x: Tensor, index: Tensor, axis: number): Tensor {
  requireFloat('gather', x);
  requireDtype('gather', index, 'index', 'int32');
  const b = backendOf('gather', x, index);
  const a = normalizeAxis('gather', axis, x.rank);
  const ok = index.rank === x.rank && index.shape.every((d, i) => i === a || d === x.shape[i]);
  if (!ok) {
    throw new Error(`gather: index ${fmt(index.shape)} must have the rank of x ${fmt(x.shape)} and match it off axis ${axis}`);
  }
  const y = result(b, runKernel(b, 'gather', index.shape, {
    inputs: { x: x.data_, index: index.data_ }, attrs: { xShape: x.shape, indexShape: index.shape, axis: a },
  }), index.shape);
  return attach('gather', y, [x], (dy) => [
    () => result(b, runKernel(b, 'scatterAdd', x.shape, {
      inputs: { dy: dy.data_, index: index.data_ }, attrs: { indexShape: index.shape, axis: a, outShape: x.shape },
    }), x.shape),
  ], [index]);
}

/** torch.index_select: rows (along axis) picked by a 1-D index. `indexSelect(x, 0, ids)` */
export function indexSelect(x: Tensor, axis: number, index: Tensor): Tensor {
  requireFloatOrHalf('indexSelect', x); // rows of a 16-bit table are widened to float32
  requireDtype('indexSelect', index, 'index', 'int32');
  const b = backendOf('indexSelect', x, index);
  if (index.rank !== 1) throw new Error(`indexSelect: index must be 1-D, got ${index.describe()}`);
  const a = normalizeAxis('indexSelect', axis, x.rank);
  const shape = [...x.shape];
  shape[a] = index.size;
  const y = result(b, runKernel(b, 'indexSelect', shape, {
    inputs: { x: x.data_, index: index.data_ }, attrs: { xShape: x.shape, count: index.size, axis: a },
  }), shape);
  return attach('indexSelect', y, [x], (dy) => [
    () => result(b, runKernel(b, 'indexAdd', x.shape, {
      inputs: { dy: dy.data_, index: index.data_ }, attrs: { count: index.size, axis: a, xShape: x.shape },
    }), x.shape),
  ], [index]);
}

/** F.embedding: weight[indices], shape indices.shape + [dim]. `embedding(wte, ids)` */
export function embedding(weight: Tensor, indices: Tensor): Tensor {
  if (weight.rank !== 2) throw new Error(`embedding: weight must be [numEmbeddings, dim], got ${weight.describe()}`);
  requireDtype('embedding', indices, 'indices', 'int32');
  return forwardScope(() => {
    const flat = reshape(indices, [indices.size]); // read by indexSelect's backward (indexAdd)
    let rows: Tensor;
    try {
      rows = indexSelect(weight, 0, flat);
    } catch (err) {
      throw new Error(`embedding: ${(err as Error).message} (weight ${fmt(weight.shape)}, indices ${fmt(indices.shape)})`);
    }
    return reshape(rows, [...indices.shape, weight.shape[1]]);
  });
}
