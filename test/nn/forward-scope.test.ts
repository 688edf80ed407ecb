// Every Module.forward runs in the engine's forward scope: a block written with
// no release call holds the same activation memory as the built-in one.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  add, keep, layerNorm, linear, manualSeed, memory, mul, randn, reshape, resetPeak,
  scaledDotProductAttention, sum, tidy, type Tensor,
} from '@lowrank/core';
import { Block, LayerNorm, MLP, Module, resolveConfig, type TransformerConfig } from '@lowrank/nn';
import { fixturesDir } from '../fixtures-dir.ts';

const config: TransformerConfig = resolveConfig(
  (JSON.parse(readFileSync(path.join(fixturesDir, 'models/gpt-tiny.json'), 'utf8')) as { config: TransformerConfig }).config,
);

/** A GPT block written the way a user would, from core ops on the built-in block's weights: no release call. */
class UserBlock extends Module {
  constructor(readonly inner: Block) {
    super();
    this.register('inner', inner);
  }

  forward(x: Tensor): Tensor {
    const [B, T, C] = x.shape;
    const { inputLayernorm: ln1, postAttentionLayernorm: ln2, selfAttn: attn, mlp } = this.inner;
    assert.ok(ln1 instanceof LayerNorm && ln2 instanceof LayerNorm && mlp instanceof MLP);
    const H = attn.nHead;
    const n1 = layerNorm(x, ln1.weight, ln1.bias, ln1.eps);
    // The built-in block's fusions, through public ops: heads read in place, residuals and GELU in the matmuls.
    const heads = (w: Tensor, b: Tensor | null): Tensor => reshape(linear(n1, w, b), [B, T, H, C / H]); // [B, T, H, D]
    const y = scaledDotProductAttention(heads(attn.qProj.weight, attn.qProj.bias), heads(attn.kProj.weight, attn.kProj.bias),
      heads(attn.vProj.weight, attn.vProj.bias), { causal: true, layout: 'bthd' }); // [B, T, H, D]
    const h = linear(reshape(y, [B, T, C]), attn.oProj.weight, attn.oProj.bias, { addend: x });
    const n2 = layerNorm(h, ln2.weight, ln2.bias, ln2.eps);
    const u = linear(n2, mlp.upProj.weight, mlp.upProj.bias);
    return linear(u, mlp.downProj.weight, mlp.downProj.bias, { inputActivation: 'gelu', addend: h });
  }
}

interface Footprint {
  /** Bytes still alive after forward: what backward will read, and the output. */
  held: number;
  /** Peak over forward and backward, above the bytes alive before. */
  peak: number;
  y: number[];
  dx: number[];
}

function footprint(block: Module & { forward(x: Tensor): Tensor }, x: Tensor): Footprint {
  return tidy(() => {
    const before = memory().liveBytes;
    resetPeak();
    const y = block.forward(x);
    const held = memory().liveBytes - before;
    sum(mul(y, y)).backward();
    const peak = memory().peakBytes - before;
    const dx = Array.from(x.grad!.dataSync());
    x.grad!.dispose();
    x.grad = null;
    for (const p of block.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
    return { held, peak, y: Array.from(y.dataSync()), dx };
  });
}

describe('forward scope', () => {
  test('a user-written block without release calls holds the activation memory of the built-in block', () => {
    manualSeed(3);
    const block = new Block(config);
    const user = new UserBlock(block);
    const x = randn([2, config.blockSize, config.nEmbd]).requiresGrad_(true);
    const builtIn = footprint(block, x);
    const mine = footprint(user, x);
    mine.y.forEach((v, i) => assert.ok(Math.abs(v - builtIn.y[i]) < 1e-5, `y[${i}]: ${v} vs ${builtIn.y[i]}`));
    mine.dx.forEach((v, i) => assert.ok(Math.abs(v - builtIn.dx[i]) < 1e-4, `dx[${i}]: ${v} vs ${builtIn.dx[i]}`));
    // What backward reads, in floats (C = H * D): n1, q, k, v, attention's output (read
    // in place as o_proj's input), h, n2, the MLP's 4C-wide input (down_proj reads it
    // through GELU), the block's output; the attention's logsumexp [B*H, T] and two
    // norms' mean and rstd [B*T].
    const [B, T, C, H] = [2, config.blockSize, config.nEmbd, config.nHead];
    const floats = (1 + 3 + 1 + 1 + 1 + 4 + 1) * B * T * C + B * H * T + 4 * B * T;
    assert.equal(builtIn.held, 4 * floats, `bytes the built-in block holds for backward: ${builtIn.held}, expected ${4 * floats}`);
    assert.equal(mine.held, builtIn.held, `bytes held for backward: user ${mine.held} vs built-in ${builtIn.held}`);
    assert.equal(mine.peak, builtIn.peak, `peak bytes: user ${mine.peak} vs built-in ${builtIn.peak}`);
  });

  test('what a forward returns, what backward saves and what keep() took out survive; the rest is freed', () => {
    class Probe extends Module {
      scratch: Tensor | null = null;
      kept: Tensor | null = null;
      forward(x: Tensor): { out: Tensor; also: Tensor[] } {
        this.scratch = mul(x, 2); // read by no backward: freed at the end of forward
        this.kept = keep(this.scratch.add(1)); // taken out of every scope: the caller owns it
        const out = mul(x, x); // its backward saves x, made outside
        return { out, also: [add(out, 1)] };
      }
    }
    tidy(() => {
      const probe = new Probe();
      const x = randn([3]).requiresGrad_(true);
      const r = probe.forward(x);
      assert.equal(probe.scratch!.isDisposed, true);
      assert.equal(probe.kept!.isDisposed, false);
      probe.kept!.dispose();
      assert.equal(r.out.isDisposed, false);
      assert.equal(r.also[0].isDisposed, false);
      sum(r.also[0]).backward();
      assert.ok(x.grad);
    });
  });
});
