// Residual adds fused into the projection that feeds them (o_proj, down_proj): same values, fewer kernels.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { add, manualSeed, noGrad, profileKernels, randn, tidy, type Tensor } from '@lowrank/core';
import { CausalSelfAttention, MLP, SwiGLUMLP } from '@lowrank/nn';

function close(a: Tensor, b: Tensor, what: string): void {
  const [x, y] = [a.dataSync(), b.dataSync()];
  assert.equal(x.length, y.length);
  x.forEach((v, i) => assert.ok(Math.abs(v - y[i]) <= 1e-6 * (1 + Math.abs(y[i])), `${what}[${i}]: ${v} vs ${y[i]}`));
}

const binaries = (fn: () => void): number => profileKernels(fn).filter((r) => r.kernel === 'binary').length;

describe('residual projections', () => {
  test('attention and the MLPs with a residual equal residual + module(x), with one binary kernel fewer', () => {
    manualSeed(3);
    const x = randn([2, 5, 16]);
    const res = randn([2, 5, 16]);
    const modules = [
      ['attention', new CausalSelfAttention({ nEmbd: 16, nHead: 2, blockSize: 8 }), (m: CausalSelfAttention, r?: Tensor) => m.forward(x, { residual: r })],
      ['mlp', new MLP(16, 32), (m: MLP, r?: Tensor) => m.forward(x, r)],
      ['swiglu', new SwiGLUMLP(16, 24), (m: SwiGLUMLP, r?: Tensor) => m.forward(x, r)],
    ] as const;
    for (const [name, m, run] of modules) {
      tidy(() => noGrad(() => {
        const call = run as (mm: typeof m, r?: Tensor) => Tensor;
        let fused!: Tensor;
        let plain!: Tensor;
        const nFused = binaries(() => { fused = call(m, res); });
        const nPlain = binaries(() => { plain = add(res, call(m)); });
        close(fused, plain, name);
        assert.equal(nFused, nPlain - 1, `${name}: ${nFused} binary kernels fused vs ${nPlain}`);
      }));
    }
  });

  test('with dropout active in training the residual is added after the dropout (same as without fusing)', () => {
    manualSeed(4);
    const mlp = new MLP(8, 16, { dropout: 0.5 });
    mlp.train();
    const x = randn([3, 8]);
    const res = randn([3, 8]);
    manualSeed(9);
    const fused = noGrad(() => mlp.forward(x, res));
    manualSeed(9);
    const plain = noGrad(() => add(res, mlp.forward(x)));
    close(fused, plain, 'mlp with dropout');
  });
});
