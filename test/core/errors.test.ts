import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  add, backward, concat, crossEntropy, embedding, expand, gather, getBackend, indexSelect, layerNorm, matmul, max, memory,
  mean, mul, permute, reshape, rmsNorm, scaledDotProductAttention, slice, softmax, split, stack, sum, tensor, transpose,
  variance, view, where, zeros, type Tensor,
} from '@lowrank/core';
import { randTensor } from './arbitraries.ts';

/** Inputs made by the helpers below, so that throwsCleanly can tell them from what the op left behind. */
let made: Tensor[] = [];
const track = (t: Tensor): Tensor => {
  made.push(t);
  return t;
};
const f = (shape: number[], seed = 1): Tensor => track(randTensor(shape, seed));
const ints = (values: number[], shape = [values.length]): Tensor => track(tensor(values, { shape, dtype: 'int32' }));
const bools = (values: number[][] | number[]): Tensor => track(tensor(values, { dtype: 'bool' }));

/** Asserts fn throws an Error matching re, and that the failed op left no tensor behind. */
function throwsCleanly(fn: () => unknown, re: RegExp): void {
  made = [];
  const live = (): number => memory('cpu').liveTensors + memory('meta').liveTensors;
  const before = live();
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error, 'expected an Error');
    assert.match(err.message, re);
    return true;
  });
  const after = live();
  const inputs = made.filter((t) => !t.isDisposed).length;
  assert.equal(after - inputs, before, `${re}: live tensors ${before} -> ${after} (${inputs} inputs) after the failed op`);
  for (const t of made) t.dispose();
  made = [];
}

describe('shape mismatches name the op and the shapes', () => {
  test('broadcasting binary ops', () => {
    throwsCleanly(() => add(f([2, 3]), f([4])), /^add: shapes \[2, 3\] and \[4\] cannot be broadcast together$/);
    throwsCleanly(() => mul(f([2, 3]), f([3, 2])), /^mul: shapes \[2, 3\] and \[3, 2\] cannot be broadcast together$/);
    throwsCleanly(() => f([2]).sub(f([3])), /^sub: shapes \[2\] and \[3\]/);
    throwsCleanly(() => f([2]).div(f([3])), /^div: shapes \[2\] and \[3\]/);
    throwsCleanly(() => f([2]).pow(f([3])), /^pow: shapes \[2\] and \[3\]/);
    throwsCleanly(() => where(bools([1, 0]), f([3]), 0), /^where: shapes \[2\] and \[3\] and \[\] cannot be broadcast together$/);
    throwsCleanly(() => f([2, 3]).maskedFill(bools([[1], [0], [1]]), 0), /^maskedFill: shapes \[2, 3\] and \[3, 1\]/);
    throwsCleanly(() => f([1, 3]).maskedFill(bools([[1], [0]]), 0), /^maskedFill: mask of shape \[2, 1\] does not broadcast to x of shape \[1, 3\]$/);
  });

  test('matmul', () => {
    throwsCleanly(() => matmul(f([2, 3]), f([4, 5])), /^matmul: inner dimensions differ: \[2, 3\] @ \[4, 5\] \(3 vs 4\)$/);
    throwsCleanly(() => matmul(f([2, 3]), f([4, 3]), { transposeA: true }), /^matmul: inner dimensions differ: \[2, 3\]\^T @ \[4, 3\] \(2 vs 4\)$/);
    throwsCleanly(() => matmul(f([3]), f([3, 2])), /^matmul: both inputs need rank >= 2, got \[3\] and \[3, 2\]$/);
    throwsCleanly(() => matmul(f([2, 2, 3]), f([3, 3, 4])), /^matmul: batch dimensions \[2\] of \[2, 2, 3\] and \[3\] of \[3, 3, 4\] cannot be broadcast together$/);
  });

  test('reductions: bad and repeated axes', () => {
    throwsCleanly(() => sum(f([2, 3]), 2), /^sum: axis 2 is out of range for a tensor of rank 2$/);
    throwsCleanly(() => mean(f([2, 3]), -3), /^mean: axis -3 is out of range for a tensor of rank 2$/);
    throwsCleanly(() => max(f([2, 3]), [0, -2]), /^max: repeated axis in \[0,-2\]$/);
    throwsCleanly(() => variance(f([2, 3]), 1.5), /^var: axis 1.5 is out of range/);
    throwsCleanly(() => max(track(zeros([0, 3]))), /^max: cannot reduce an empty tensor of shape \[0, 3\]$/);
  });

  test('shape ops', () => {
    throwsCleanly(() => reshape(f([2, 3]), [4]), /^reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4\]$/);
    throwsCleanly(() => reshape(f([2, 3]), [-1, -1]), /^reshape: invalid target shape \[-1, -1\]/);
    throwsCleanly(() => reshape(f([2, 3]), [4, -1]), /^reshape: cannot infer -1 in \[4, -1\] for 6 elements of shape \[2, 3\]$/);
    throwsCleanly(() => view(f([2, 3]), [5]), /^view: cannot reshape \[2, 3\] \(6 elements\) to \[5\]$/);
    throwsCleanly(() => transpose(f([2, 3]), 0, 2), /^transpose: axis 2 is out of range for a tensor of rank 2$/);
    throwsCleanly(() => permute(f([2, 3]), [0]), /^permute: perm \[0\] has 1 axes but the tensor \[2, 3\] has 2$/);
    throwsCleanly(() => permute(f([2, 3]), [1, 1]), /^permute: perm \[1,1\] repeats an axis$/);
    throwsCleanly(() => slice(f([4]), { axes: [0], starts: [0], ends: [4], steps: [0] }), /^slice: step 0 on axis 0 must be an integer >= 1$/);
    throwsCleanly(() => slice(f([4, 4]), { axes: [0, -2], starts: [0, 0], ends: [1, 1] }), /^slice: axis -2 listed twice$/);
    throwsCleanly(() => slice(f([4]), { axes: [1], starts: [0], ends: [1] }), /^slice: axis 1 is out of range for a tensor of rank 1$/);
    throwsCleanly(() => slice(f([4]), { axes: [0], starts: [0, 1], ends: [1] }), /^slice: axes, starts, ends and steps must have one entry per axis \(got 1, 2, 1, 1\)$/);
    throwsCleanly(() => concat([f([2, 3]), f([3, 3])], 1), /^concat: shapes \[2, 3\], \[3, 3\] do not match off axis 1$/);
    throwsCleanly(() => concat([f([2, 3]), f([2, 3, 1])], 0), /^concat: shapes \[2, 3\], \[2, 3, 1\] do not match off axis 0$/);
    throwsCleanly(() => concat([]), /^concat: needs at least one tensor$/);
    throwsCleanly(() => split(f([5, 2]), [2, 2], 0), /^split: sizes \[2,2\] must be non-negative and sum to 5 \(axis 0 of \[5, 2\]\)$/);
    throwsCleanly(() => split(f([5, 2]), 0, 0), /^split: section size 0 must be a positive integer$/);
    throwsCleanly(() => stack([f([2]), f([3])]), /^stack: all shapes must match, got \[2\], \[3\]$/);
    throwsCleanly(() => stack([f([2])], 2), /^stack: axis 2 is out of range for a tensor of rank 2$/);
    throwsCleanly(() => expand(f([2, 3]), [4, 3]), /^expand: cannot expand \[2, 3\] to \[4, 3\] \(axis 0: 2 -> 4\)$/);
    throwsCleanly(() => expand(f([2, 3]), [3]), /^expand: target \[3\] has fewer axes than \[2, 3\]$/);
    throwsCleanly(() => expand(f([3]), [-1, 3]), /^expand: -1 is not allowed for the new leading axis 0 in \[-1, 3\]$/);
  });

  test('fused nn ops', () => {
    throwsCleanly(() => softmax(f([2, 3]), 2), /^softmax: axis 2 is out of range for a tensor of rank 2$/);
    throwsCleanly(() => f([2]).logSoftmax(-2), /^logSoftmax: axis -2 is out of range for a tensor of rank 1$/);
    throwsCleanly(() => layerNorm(f([2, 4]), f([3])), /^layerNorm: weight must have shape \[4\] \(the last axis of the input\), got \[3\]$/);
    throwsCleanly(() => layerNorm(f([2, 4]), f([4]), f([4, 1])), /^layerNorm: bias must have shape \[4\]/);
    throwsCleanly(() => rmsNorm(f([2, 4]), f([2])), /^rmsNorm: weight must have shape \[4\]/);
    throwsCleanly(() => scaledDotProductAttention(f([1, 3, 4]), f([1, 3, 5]), f([1, 3, 4])),
      /^scaledDotProductAttention: incompatible q \[1, 3, 4\], k \[1, 3, 5\], v \[1, 3, 4\]$/);
    throwsCleanly(() => scaledDotProductAttention(f([4, 2]), f([3, 2]), f([3, 2]), { causal: true }),
      /^scaledDotProductAttention: causal attention needs at least as many keys \(3\) as queries \(4\)$/);
    throwsCleanly(() => scaledDotProductAttention(f([2]), f([2]), f([2])), /^scaledDotProductAttention: q, k, v must share a rank >= 2/);
    throwsCleanly(() => crossEntropy(f([2, 3]), ints([0, 1, 2])), /^crossEntropy: targets \[3\] must have the shape of logits \[2, 3\] without its last \(class\) axis$/);
    throwsCleanly(() => crossEntropy(f([2, 3]), ints([0, 1]), { reduction: 'none' as 'sum' }), /^crossEntropy: reduction must be 'mean' or 'sum', got 'none'$/);
  });
});

describe('out-of-range indices name the op and the value', () => {
  test('gather', () => {
    throwsCleanly(() => gather(f([2, 3]), ints([0, 3, 1, 0], [2, 2]), 1), /^gather: index 3 at position 1 is out of range \[0, 3\)$/);
    throwsCleanly(() => gather(f([2, 3]), ints([-1, 0], [2, 1]), 1), /^gather: index -1 at position 0 is out of range \[0, 3\)$/);
    throwsCleanly(() => gather(f([2, 3]), ints([0, 1, 0], [3, 1]), 1), /^gather: index \[3, 1\] must have the rank of x \[2, 3\] and match it off axis 1$/);
    throwsCleanly(() => gather(f([2, 3]), ints([0, 1]), 2), /^gather: axis 2 is out of range for a tensor of rank 2$/);
  });
  test('indexSelect', () => {
    throwsCleanly(() => indexSelect(f([4, 2]), 0, ints([1, 4])), /^indexSelect: index 4 at position 1 is out of range \[0, 4\)$/);
    throwsCleanly(() => indexSelect(f([4, 2]), 1, ints([-1])), /^indexSelect: index -1 at position 0 is out of range \[0, 2\)$/);
    throwsCleanly(() => indexSelect(f([4, 2]), 0, ints([0, 1], [1, 2])), /^indexSelect: index must be 1-D, got int32\[1, 2\]$/);
  });
  test('embedding', () => {
    throwsCleanly(() => embedding(f([5, 3]), ints([1, 7], [1, 2])), /^embedding: .*index 7 at position 1 is out of range \[0, 5\).*weight \[5, 3\], indices \[1, 2\]/);
    throwsCleanly(() => embedding(f([5]), ints([1])), /^embedding: weight must be \[numEmbeddings, dim\], got float32\[5\]$/);
  });
  test('crossEntropy targets', () => {
    throwsCleanly(() => crossEntropy(f([2, 3]), ints([0, 3])), /^crossEntropy: target 3 at position 1 is out of range for 3 classes \(ignoreIndex -100\)$/);
    throwsCleanly(() => crossEntropy(f([2, 3]), ints([-1, 0])), /^crossEntropy: target -1 at position 0 is out of range for 3 classes/);
    // the ignore index itself is fine
    assert.ok(Number.isFinite(crossEntropy(f([2, 3]), ints([-100, 0])).item()));
  });
});

describe('wrong dtypes', () => {
  const i32 = (): Tensor => ints([1, 2, 3]);
  test('float ops reject int32 tensors', () => {
    throwsCleanly(() => add(i32(), f([3])), /^add: expected a float32 tensor, got int32\[3\]$/);
    throwsCleanly(() => i32().exp(), /^exp: expected a float32 tensor, got int32\[3\]$/);
    throwsCleanly(() => matmul(ints([1, 2, 3, 4], [2, 2]), f([2, 2])), /^matmul: expected a float32 tensor, got int32\[2, 2\]$/);
    throwsCleanly(() => sum(i32()), /^sum: expected a float32 tensor, got int32\[3\]$/);
    throwsCleanly(() => softmax(i32()), /^softmax: expected a float32 tensor, got int32\[3\]$/);
    throwsCleanly(() => where(bools([1, 0, 1]), i32(), 0), /^where: expected a float32 tensor, got int32\[3\]$/);
  });
  test('index arguments must be int32', () => {
    throwsCleanly(() => gather(f([2, 3]), f([2, 1]), 1), /^gather: index must be int32, got float32\[2, 1\]$/);
    throwsCleanly(() => indexSelect(f([2, 3]), 0, f([1])), /^indexSelect: index must be int32, got float32\[1\]$/);
    throwsCleanly(() => embedding(f([4, 2]), f([1])), /^embedding: indices must be int32, got float32\[1\]$/);
    throwsCleanly(() => crossEntropy(f([2, 3]), f([2])), /^crossEntropy: targets must be int32, got float32\[2\]$/);
  });
  test('gradients only for float32, and tensor() validates its values', () => {
    assert.throws(() => tensor([1, 2], { dtype: 'int32', requiresGrad: true }), /^Error: requiresGrad_: only float32 tensors can require gradients, got int32\[2\]$/);
    throwsCleanly(() => tensor([1.5], { dtype: 'int32' }), /^tensor: int32 value 1.5 at flat index 0 is not an integer$/);
    throwsCleanly(() => tensor([[1, 2], [3]]), /^tensor: ragged nested array at depth 1$/);
    throwsCleanly(() => tensor([1, 2, 3], { shape: [2, 2] }), /^tensor: 3 values do not fill shape \[2, 2\]$/);
  });
});

describe('mixing backends', () => {
  test('every binary-style op names the op and both backends', () => {
    const c = f([2, 2]);
    const m = track(zeros([2, 2], { backend: 'meta' }));
    throwsCleanly(() => add(c, m), /^add: inputs live on different backends \(cpu, meta\); move them with \.to\(\)$/);
    throwsCleanly(() => matmul(m, c), /^matmul: inputs live on different backends \(meta, cpu\)/);
    throwsCleanly(() => concat([c, m]), /^concat: inputs live on different backends \(cpu, meta\)/);
    throwsCleanly(() => where(bools([1, 0]), c, m), /^where: inputs live on different backends \(cpu, cpu, meta\)/);
    throwsCleanly(() => gather(c, track(ints([0, 1], [2, 1]).to('meta')), 1), /^gather: inputs live on different backends \(cpu, meta\)/);
    throwsCleanly(() => layerNorm(c, track(f([2]).to('meta'))), /^layerNorm: inputs live on different backends \(cpu, meta\)/);
    throwsCleanly(() => getBackend('tpu'), /^getBackend: no backend named 'tpu' \(registered: .*cpu.*meta/);
  });
});

describe('state is unchanged after a failed op', () => {
  test('a failed backward leaves existing gradients and the graph alone', () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    sum(mul(x, x)).backward();
    const y = mul(x, 3);
    assert.throws(() => y.backward(tensor([1, 1])), /^Error: backward: gradient shape \[2\] does not match output shape \[3\]$/);
    assert.throws(() => y.backward(), /backward: a gradient can be implied only for a scalar output/);
    assert.deepEqual(Array.from(x.grad!.dataSync()), [2, 4, 6]);
    // the graph survived: a proper backward still works
    backward(y, tensor([1, 1, 1]));
    assert.deepEqual(Array.from(x.grad!.dataSync()), [5, 7, 9]);
  });

  test('inputs keep their values after failed ops', () => {
    const x = tensor([[1, 2, 3], [4, 5, 6]]);
    assert.throws(() => gather(x, ints([0, 9], [2, 1]), 1));
    assert.throws(() => indexSelect(x, 1, ints([5])));
    assert.throws(() => crossEntropy(x, ints([0, 3])));
    assert.deepEqual(x.toArray(), [[1, 2, 3], [4, 5, 6]]);
    assert.equal(x.isDisposed, false);
  });
});
