import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  add, crossEntropy, embedding, gelu, layerNorm, matmul, memory, mul, sigmoid, sum, tanh, tensor, tidy, type Tensor,
} from '@lowrank/core';
import { lcg, randArray } from './harness.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

function param(shape: number[], seed: number, backend: string): Tensor {
  const n = shape.reduce((p, q) => p * q, 1);
  return tensor(randArray(n, lcg(seed), -0.5, 0.5), { shape, requiresGrad: true, backend });
}

for (const mode of modesUnderTest) {
  describe(`gpu memory (${mode})`, () => {
    test('1,000 forward+backward steps inside tidy leave live textures and bytes flat', () => {
      const be = backendFor(mode);
      const name = be.name;
      const w = param([8, 8], 1, name);
      const g = param([8], 2, name);
      const x = tensor(randArray(32, lcg(3)), { shape: [4, 8], backend: name });
      const targets = tensor([1, 2, 3, 0], { dtype: 'int32', backend: name });
      const step = (): void => {
        tidy(() => {
          const h = gelu(matmul(x, w, { transposeB: true }));
          const loss = crossEntropy(layerNorm(h, g, null), targets);
          loss.backward();
        });
        w.grad?.dispose();
        w.grad = null;
        g.grad?.dispose();
        g.grad = null;
      };
      for (let i = 0; i < 5; i++) step();
      const before = memory(name);
      const buffers = be.liveBuffers;
      const compiled = be.compiledKernels;
      for (let i = 0; i < 1000; i++) step();
      const after = memory(name);
      assert.equal(after.liveTensors, before.liveTensors);
      assert.equal(after.liveStorages, before.liveStorages);
      assert.equal(after.liveBytes, before.liveBytes);
      assert.equal(be.liveBuffers, buffers, 'live device buffers grew');
      assert.equal(be.compiledKernels, compiled, 'kernels were recompiled');
      assert.equal(after.readbacks, before.readbacks, 'a training step read values back');
      for (const t of [w, g, x, targets]) t.dispose();
    });

    test('a backward through a chain of 50 ops performs no readback', () => {
      const be = backendFor(mode);
      const name = be.name;
      tidy(() => {
        const x = param([3, 4], 4, name);
        const b = param([4], 5, name);
        const weight = param([10, 4], 6, name);
        const ids = tensor([[1, 9, 3]], { dtype: 'int32', backend: name });
        const before = memory(name).readbacks;
        let y = add(embedding(weight, ids).reshape([3, 4]), x);
        for (let i = 0; y && i < 48; i++) {
          const k = i % 4;
          y = k === 0 ? add(y, b) : k === 1 ? tanh(y) : k === 2 ? mul(y, x) : sigmoid(y);
        }
        const loss = sum(y);
        loss.backward();
        assert.equal(memory(name).readbacks, before, 'backward read values back');
        assert.ok(x.grad && b.grad && weight.grad);
        assert.ok(Number.isFinite(loss.item()));
        assert.equal(memory(name).readbacks, before + 1);
      });
    });
  });
}

describe('large tensors', () => {
  test('a 50257 x 768 embedding: forward rows and backward row sums are exact', () => {
    const t0 = performance.now();
    // NOTE: webasm only: under software GL (llvmpipe) the 38.6M-cell kernels
    // take about a minute, too slow for CI; the exact-index paths are shared.
    const mode = 'webasm';
    const be = backendFor(mode);
    const [V, D] = [50257, 768];
    const values = new Float32Array(V * D);
    for (let r = 0; r < V; r++) for (let c = 0; c < D; c++) values[r * D + c] = (r % 997) + c / 1024;
    tidy(() => {
      const weight = tensor(values, { shape: [V, D], requiresGrad: true, backend: be.name });
      const ids = tensor([V - 1, 0, 40000, V - 1], { dtype: 'int32', backend: be.name });
      const y = embedding(weight, ids);
      const out = y.dataSync();
      [V - 1, 0, 40000, V - 1].forEach((r, i) => {
        for (const c of [0, 1, 767]) assert.equal(out[i * D + c], (r % 997) + c / 1024, `row ${r} col ${c}`);
      });
      y.backward(tensor(new Float32Array(4 * D).fill(1), { shape: [4, D], backend: be.name }));
      // Read the gradient rows back through the device (no 154 MB readback).
      const rows = embedding(weight.grad!, tensor([V - 1, 40000, 0, V - 2], { dtype: 'int32', backend: be.name })).dataSync();
      assert.equal(rows[767], 2);
      assert.equal(rows[D + 5], 1);
      assert.equal(rows[2 * D], 1);
      assert.equal(rows[3 * D + 3], 0);
      assert.throws(() => embedding(weight, tensor([V], { dtype: 'int32', backend: be.name })), /out of range/);
    });
    console.log(`50257 x 768 embedding forward+backward on ${mode}: ${Math.round(performance.now() - t0)} ms`);
  });
});
