// adamwUpdate_, the fused optimizer op nn's Adam/AdamW run on.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { adamwUpdate_, tensor, zeros, type AdamHyper } from '@lowrank/core';

const h: AdamHyper = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1, decoupled: true };

describe('adamwUpdate_', () => {
  test('one step updates p, m and v in place (AdamW, bias-corrected)', () => {
    const p = tensor([1, -2, 0.5]);
    const g = tensor([0.5, 0.25, -1]);
    const m = zeros([3]);
    const v = zeros([3]);
    adamwUpdate_(p, g, m, v, h);
    const G = [0.5, 0.25, -1];
    const P = [1, -2, 0.5];
    // step 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) after decay.
    const want = P.map((x, i) => x * (1 - h.lr * h.weightDecay) - (h.lr * G[i]) / (Math.abs(G[i]) + h.eps));
    Array.from(p.dataSync()).forEach((x, i) => assert.ok(Math.abs(x - want[i]) < 1e-6, `p[${i}]: ${x} vs ${want[i]}`));
    Array.from(m.dataSync()).forEach((x, i) => assert.ok(Math.abs(x - 0.1 * G[i]) < 1e-7, `m[${i}]`));
    Array.from(v.dataSync()).forEach((x, i) => assert.ok(Math.abs(x - 0.001 * G[i] * G[i]) < 1e-9, `v[${i}]`));
  });

  test('errors name the op and the mismatched tensor', () => {
    const p = tensor([1, 2]);
    assert.throws(() => adamwUpdate_(p, tensor([1, 2, 3]), zeros([2]), zeros([2]), h), /adamwUpdate_: every tensor must have the parameter's shape float32\[2\], got float32\[3\]/);
    assert.throws(() => adamwUpdate_(p, tensor([1, 2], { dtype: 'int32' }), zeros([2]), zeros([2]), h), /adamwUpdate_: expected a float32 tensor/);
  });
});
