import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  add, arange, cast, crossEntropy, dropout, embedding, layerNorm, manualSeed, matmul, maximum, memory, narrow, ones, rand,
  randint, randn, scaledDotProductAttention, sum, tensor, tidy, zeros, type Tensor,
} from '@lowrank/core';
import { hasFixtures, inputTensor, loadOpFixtures, opTable } from '../golden/fixtures.ts';

const meta = { backend: 'meta' } as const;

function assertMeta(t: Tensor | null, shape: readonly number[], what = 'tensor'): void {
  assert.ok(t, `${what}: missing`);
  assert.equal(t.backend.name, 'meta', `${what}: backend`);
  assert.deepEqual(t.shape, shape, `${what}: shape`);
  assert.equal(t.data_, null, `${what}: holds no data`);
}

describe('meta backend', () => {
  test('every golden fixture op runs forward and backward on meta with the right shapes', { skip: hasFixtures ? false : 'no fixtures' }, () => {
    let cases = 0;
    for (const fixture of loadOpFixtures()) {
      for (const c of fixture.cases) {
        tidy(() => {
          const what = `${fixture.op}/${c.name}`;
          const inputs = c.inputs.map((t) => inputTensor(t, 'meta'));
          for (const x of inputs) if (x.dtype === 'float32') x.requiresGrad_(true);
          const out = opTable[fixture.op](inputs, c.attrs);
          const outs = Array.isArray(out) ? out : [out];
          const expected = Array.isArray(c.output) ? c.output : [c.output];
          assert.equal(outs.length, expected.length, what);
          outs.forEach((o, i) => assertMeta(o, expected[i].shape, `${what} output ${i}`));
          const ups = Array.isArray(c.upstream) ? c.upstream : [c.upstream];
          outs.forEach((o, i) => o.backward(inputTensor(ups[i], 'meta')));
          c.grads.forEach((g, i) => {
            if (g) assertMeta(inputs[i].grad, g.shape, `${what} grad ${i}`);
            else assert.equal(inputs[i].grad, null);
          });
          for (const x of inputs) x.grad?.dispose();
        });
        cases++;
      }
    }
    assert.ok(cases > 100);
  });

  test('ops outside the fixtures: narrow, dropout, maximum, cast, clone, random makers', () => {
    tidy(() => {
      const x = zeros([4, 6], { ...meta, requiresGrad: true });
      assertMeta(narrow(x, 1, 2, 3), [4, 3]);
      manualSeed(0);
      const d = dropout(x, 0.5);
      assertMeta(d, [4, 6]);
      assertMeta(maximum(x, ones([6], meta)), [4, 6]);
      assertMeta(cast(x, 'int32'), [4, 6]);
      assert.equal(cast(x, 'int32').dtype, 'int32');
      assertMeta(x.clone(), [4, 6]);
      assertMeta(randn([3, 2], meta), [3, 2]);
      assertMeta(rand([3], meta), [3]);
      assertMeta(randint(0, 5, [7], meta), [7]);
      assertMeta(arange(5, meta), [5]);
      sum(add(d, 1)).backward();
      assertMeta(x.grad, [4, 6], 'x.grad');
    });
  });

  test('a forward pass through an LM-sized block sizes activations without computing them', () => {
    const before = memory('meta');
    tidy(() => {
      const wte = zeros([32000, 4096], meta);
      const w = zeros([4096, 4096], meta);
      const ids = tensor(new Int32Array(2 * 512), { ...meta, shape: [2, 512], dtype: 'int32' });
      const h = layerNorm(embedding(wte, ids), ones([4096], meta), zeros([4096], meta));
      const q = matmul(h, w, { transposeB: true }).reshape([2, 512, 32, 128]).transpose(1, 2);
      const a = scaledDotProductAttention(q, q, q, { causal: true });
      assertMeta(a, [2, 32, 512, 128]);
      const logits = matmul(a.transpose(1, 2).reshape([2, 512, 4096]), wte, { transposeB: true });
      assertMeta(logits, [2, 512, 32000]);
      const loss = crossEntropy(logits, randint(0, 32000, [2, 512], meta));
      assertMeta(loss, []);
      const m = memory('meta');
      // weights alone: (32000 + 4096) * 4096 * 4 bytes
      assert.ok(m.liveBytes - before.liveBytes >= (32000 + 4096) * 4096 * 4);
      assert.ok(m.peakBytes >= m.liveBytes);
    });
    assert.equal(memory('meta').liveTensors, before.liveTensors);
    assert.equal(memory('meta').liveBytes, before.liveBytes);
  });

  test('reading values throws a clear error', () => {
    const x = zeros([2, 3], meta);
    assert.throws(() => x.dataSync(), /^Error: dataSync: float32\[2, 3\] lives on the 'meta' backend, which holds no values$/);
    assert.throws(() => x.toArray(), /dataSync: float32\[2, 3\] lives on the 'meta' backend/);
    assert.throws(() => sum(x).item(), /dataSync: float32\[\] lives on the 'meta' backend/);
    assert.match(String(x), /^Tensor\(float32\[2, 3\]\)$/);
    x.dispose();
  });

  test('moving to meta keeps shape and dtype; moving back has no values to copy', () => {
    const c = tensor([[1, 2], [3, 4]]);
    const m = c.to('meta');
    assertMeta(m, [2, 2]);
    assert.equal(m.to('meta'), m);
    assert.throws(() => m.to('cpu'), /^Error: to: float32\[2, 2\] lives on the 'meta' backend and holds no values to copy to 'cpu'$/);
    const i = tensor([1, 2], { dtype: 'int32' }).to('meta');
    assert.equal(i.dtype, 'int32');
  });
});
