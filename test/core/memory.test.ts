import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  add, crossEntropy, dispose, embedding, gelu, keep, layerNorm, matmul, maximum, memory, mul, noGrad, ones, reshape, rmsNorm,
  resetPeak, scaledDotProductAttention, softmax, stack, sub, sum, tensor, tidy, variance, where, zeros, type Tensor,
} from '@lowrank/core';
import { hasFixtures, inputTensor, loadOpFixtures, opTable } from '../golden/fixtures.ts';
import { randIndex, randTensor } from './arbitraries.ts';

/** liveTensors must match exactly; liveBytes may only drop (the GC may reclaim older, undisposed tensors). */
function assertNoLeak(before: ReturnType<typeof memory>, what: string): void {
  const after = memory();
  assert.equal(after.liveTensors, before.liveTensors, `${what}: live tensors ${before.liveTensors} -> ${after.liveTensors}`);
  assert.ok(after.liveBytes <= before.liveBytes, `${what}: live bytes ${before.liveBytes} -> ${after.liveBytes}`);
}

describe('tidy', () => {
  test('disposes intermediates and keeps the returned tensors', () => {
    const before = memory();
    let a: Tensor | null = null;
    let b: Tensor | null = null;
    const out = tidy(() => {
      a = tensor([1, 2, 3]);
      b = mul(a, 2);
      const c = add(b, 1);
      return { c, list: [b] };
    });
    assert.equal(a!.isDisposed, true);
    assert.equal(b!.isDisposed, false);
    assert.deepEqual(Array.from(out.c.dataSync()), [3, 5, 7]);
    assert.equal(memory().liveTensors, before.liveTensors + 2);
    dispose(out);
    assertNoLeak(before, 'tidy');
  });

  test('nested scopes hand returned tensors to the parent; keep() outlives every scope', () => {
    const before = memory();
    let inner: Tensor | null = null;
    let kept: Tensor | null = null;
    const outer = tidy(() => {
      inner = tidy(() => mul(tensor([1, 2]), 3));
      kept = keep(tensor([9]));
      return add(inner, 1);
    });
    assert.equal(inner!.isDisposed, true, 'returned by the inner scope but dropped by the outer');
    assert.equal(kept!.isDisposed, false);
    assert.deepEqual(Array.from(outer.dataSync()), [4, 7]);
    dispose([outer, kept]);
    assertNoLeak(before, 'nested tidy');
  });

  test('disposes what it made when fn throws', () => {
    const before = memory();
    assert.throws(() => tidy(() => {
      const a = tensor([1, 2, 3]);
      mul(a, a);
      throw new Error('boom');
    }), /boom/);
    assertNoLeak(before, 'tidy that throws');
  });

  test('200 training steps inside tidy leave liveBytes and liveTensors flat', () => {
    const params = {
      wte: randTensor([11, 8], 1, { requiresGrad: true }),
      lnW: randTensor([8], 2, { low: 0.5, high: 1.5, requiresGrad: true }),
      lnB: randTensor([8], 3, { requiresGrad: true }),
      w1: randTensor([16, 8], 4, { requiresGrad: true }),
      w2: randTensor([11, 16], 5, { requiresGrad: true }),
      frozen: randTensor([8, 8], 6),
    };
    const ids = randIndex([2, 5], 11, 7);
    const targets = randIndex([2, 5], 11, 8);
    const step = (): number => tidy(() => {
      const h = layerNorm(embedding(params.wte, ids), params.lnW, params.lnB, 1e-5);              // [2, 5, 8]
      const q = reshape(matmul(h, params.frozen, { transposeB: true }), [2, 1, 5, 8]);         // [2, 1, 5, 8]
      const att = reshape(scaledDotProductAttention(q, q, q, { causal: true }), [2, 5, 8]);
      const x = add(h, softmax(att, 1));
      const up = gelu(matmul(x, params.w1, { transposeB: true }));                              // [2, 5, 16]
      const logits = matmul(up, params.w2, { transposeB: true });                               // [2, 5, 11]
      const loss = add(crossEntropy(logits, targets), mul(variance(logits, -1).mean(), 1e-3));
      loss.backward();
      noGrad(() => {
        for (const p of [params.wte, params.lnW, params.lnB, params.w1, params.w2]) {
          p.assign(sub(p, mul(p.grad!, 0.05)));
          p.grad!.dispose();
          p.grad = null;
        }
      });
      return loss.item();
    });
    const first = step();
    const before = memory();
    let last = first;
    for (let i = 0; i < 200; i++) last = step();
    assertNoLeak(before, '200 steps');
    assert.equal(memory().liveStorages, before.liveStorages);
    assert.ok(last < first, `loss should fall: ${first} -> ${last}`);
  });
});

describe('dispose and views', () => {
  test('a reshape view shares storage; the bytes go only with the last view', () => {
    const before = memory();
    const x = zeros([4, 256]);
    const bytes = 4 * 256 * 4;
    assert.equal(memory().liveBytes, before.liveBytes + bytes);
    const v = reshape(x, [256, 4]);
    const w = x.view([1024]);
    assert.equal(memory().liveBytes, before.liveBytes + bytes, 'views allocate nothing');
    assert.equal(memory().liveTensors, before.liveTensors + 3);
    x.dispose();
    assert.equal(memory().liveBytes, before.liveBytes + bytes);
    assert.equal(v.dataSync().length, 1024);
    v.dispose();
    assert.equal(memory().liveBytes, before.liveBytes + bytes);
    w.dispose();
    assertNoLeak(before, 'views');
    assert.equal(memory().liveBytes, before.liveBytes);
    assert.throws(() => w.dataSync(), /Tensor float32\[1024\] was disposed/);
    w.dispose();
    assert.equal(memory().liveTensors, before.liveTensors, 'disposing twice is a no-op');
  });

  test('detach shares storage too', () => {
    const before = memory();
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const d = x.detach();
    x.dispose();
    assert.deepEqual(Array.from(d.dataSync()), [1, 2, 3]);
    d.dispose();
    assertNoLeak(before, 'detach');
  });

  test('peakBytes tracks the high-water mark; resetPeak restarts it', () => {
    resetPeak();
    const base = memory();
    assert.equal(base.peakBytes, base.liveBytes);
    const big = zeros([1000, 100]);
    big.dispose();
    const m = memory();
    assert.ok(m.peakBytes >= base.liveBytes + 400_000, `peak ${m.peakBytes}`);
    assert.equal(m.liveBytes, base.liveBytes);
    resetPeak();
    assert.equal(memory().peakBytes, memory().liveBytes);
    const small = zeros([10]);
    assert.equal(memory().peakBytes, base.liveBytes + 40);
    small.dispose();
  });
});

describe('ops leave no hidden tensors behind', () => {
  const cases: [string, () => Tensor[], (xs: Tensor[]) => Tensor][] = [
    ['where with number branches', () => [tensor([1, 0, 1], { dtype: 'bool' }), randTensor([3], 1, { requiresGrad: true })], ([c, x]) => where(c, x, 0)],
    ['maskedFill', () => [randTensor([2, 3], 1, { requiresGrad: true }), tensor([[1, 0, 0]], { dtype: 'bool' })], ([x, m]) => x.maskedFill(m, -1e4)],
    ['maximum', () => [randTensor([2, 3], 1, { requiresGrad: true }), randTensor([3], 2, { requiresGrad: true })], ([a, b]) => maximum(a, b)],
    ['max over an axis', () => [randTensor([3, 4], 1, { requiresGrad: true })], ([x]) => x.max(1)],
    ['sum over an axis', () => [randTensor([3, 4], 1, { requiresGrad: true })], ([x]) => sum(x, 0, true)],
    ['var', () => [randTensor([3, 4], 1, { requiresGrad: true })], ([x]) => variance(x, -1)],
    ['pow (scalar)', () => [randTensor([3, 4], 1, { low: 0.5, high: 2, requiresGrad: true })], ([x]) => x.pow(1.5)],
    ['softmax on axis 0', () => [randTensor([3, 4], 1, { requiresGrad: true })], ([x]) => softmax(x, 0)],
    ['logSoftmax on a middle axis', () => [randTensor([2, 3, 4], 1, { requiresGrad: true })], ([x]) => x.logSoftmax(1)],
    ['stack', () => [randTensor([3], 1, { requiresGrad: true }), randTensor([3], 2, { requiresGrad: true })], (xs) => stack(xs, 1)],
    ['embedding', () => [randTensor([5, 3], 1, { requiresGrad: true }), randIndex([2, 4], 5, 2)], ([w, i]) => embedding(w, i)],
    ['layerNorm', () => [randTensor([2, 4], 1, { requiresGrad: true }), randTensor([4], 2, { requiresGrad: true }), randTensor([4], 3)], ([x, w, b]) => layerNorm(x, w, b)],
    ['rmsNorm', () => [randTensor([2, 4], 1, { requiresGrad: true }), randTensor([4], 2, { requiresGrad: true })], ([x, w]) => rmsNorm(x, w)],
    ['attention', () => [randTensor([1, 2, 3, 4], 1, { requiresGrad: true }), randTensor([1, 2, 5, 4], 2), randTensor([1, 2, 5, 4], 3, { requiresGrad: true })], ([q, k, v]) => scaledDotProductAttention(q, k, v, { causal: true })],
    ['crossEntropy', () => [randTensor([3, 4], 1, { requiresGrad: true }), tensor([0, 3, -100], { dtype: 'int32' })], ([l, t]) => crossEntropy(l, t)],
  ];
  for (const [name, make, fn] of cases) {
    test(`${name}: forward and forward+backward, outside tidy`, () => {
      const before = memory();
      const inputs = make();
      const y = noGrad(() => fn(inputs));
      y.dispose();
      const z = fn(inputs);
      const up = ones(z.shape);
      z.backward(up);
      dispose([z, up]);
      for (const x of inputs) x.grad?.dispose();
      dispose(inputs);
      assertNoLeak(before, name);
    });
  }

  test('every golden fixture op, forward and backward, outside tidy', { skip: hasFixtures ? false : 'no fixtures' }, () => {
    for (const fixture of loadOpFixtures()) {
      for (const c of fixture.cases) {
        const before = memory();
        const inputs = c.inputs.map((t) => inputTensor(t, 'cpu'));
        for (const x of inputs) if (x.dtype === 'float32') x.requiresGrad_(true);
        const out = opTable[fixture.op](inputs, c.attrs);
        const outs = Array.isArray(out) ? out : [out];
        const ups = (Array.isArray(c.upstream) ? c.upstream : [c.upstream]).map((u) => inputTensor(u, 'cpu'));
        outs.forEach((o, i) => o.backward(ups[i]));
        for (const x of inputs) x.grad?.dispose();
        dispose([outs, ups, inputs]);
        assertNoLeak(before, `${fixture.op}/${c.name}`);
      }
    }
  });
});
