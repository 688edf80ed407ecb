import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { profileKernels, type Tensor } from '@lowrank/core';
import { Linear } from '@lowrank/nn';
import { LoraLinear, getPeftModel, type LoraBias, type TargetModules } from '@lowrank/lora';
import {
  build, expectedTargets, kindsOf, matmul64, numericalRank, output, relErr, sameValues, specArb, targetsArb, type Spec,
} from './helpers.ts';

const RUNS = { numRuns: 12 };

interface Case {
  spec: Spec;
  targets: TargetModules;
  r: number;
  alpha: number;
}

const caseArb: fc.Arbitrary<Case> = specArb.chain((spec) =>
  fc.record({
    spec: fc.constant(spec),
    targets: targetsArb(kindsOf(spec)),
    r: fc.integer({ min: 1, max: 3 }),
    alpha: fc.integer({ min: 1, max: 16 }),
  }),
);

const host = (t: Tensor): Float32Array => Float32Array.from(t.dataSync());

describe('LoRA properties', () => {
  test('1. a fresh adapter (B = 0) leaves outputs bit-identical', () => {
    fc.assert(fc.property(caseArb, fc.constantFrom(true, 'gaussian' as const), (c, init) => {
      const b = build(c.spec);
      const before = output(b);
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: init });
      assert.ok(peft.baseModel.loraLayers().length > 0);
      assert.ok(sameValues(output(b, peft), before));
    }), RUNS);
  });

  test('2. trainable = sum r_i (in_i + out_i) (+ allowed biases); total = base + LoRA; only lora_ / bias require grad', () => {
    const biasArb = fc.constantFrom<LoraBias>('none', 'all', 'lora_only');
    fc.assert(fc.property(caseArb, biasArb, fc.integer({ min: 1, max: 3 }), (c, bias, r2) => {
      const b = build(c.spec);
      const baseTotal = b.model.numParameters();
      const targets = expectedTargets(b.model, c.targets);
      const patternKind = kindsOf(c.spec)[0];
      let loraCount = 0;
      let biasCount = 0;
      for (const [name, lin] of targets) {
        const r = name === patternKind || name.endsWith(`.${patternKind}`) ? r2 : c.r;
        loraCount += r * (lin.inFeatures + lin.outFeatures);
        if (bias === 'lora_only' && lin.bias) biasCount += lin.bias.size;
      }
      if (bias === 'all') for (const [n, p] of b.model.namedParameters()) if (n.endsWith('bias')) biasCount += p.size;
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, bias, rankPattern: { [patternKind]: r2 } });
      assert.deepEqual(peft.getNbTrainableParameters(), { trainable: loraCount + biasCount, total: baseTotal + loraCount });
      for (const [n, p] of peft.namedParameters()) {
        const allowed = n.includes('.lora_A.') || n.includes('.lora_B.') || (bias !== 'none' && n.endsWith('.bias'));
        if (p.requiresGrad) assert.ok(allowed, `${n} requires grad`);
        if (n.includes('lora_')) assert.ok(p.requiresGrad, `${n} should train`);
      }
      if (bias === 'lora_only') {
        for (const [, l] of peft.baseModel.loraLayers()) if (l.baseLayer.bias) assert.ok(l.baseLayer.bias.requiresGrad);
      }
    }), RUNS);
  });

  test('3. after backward frozen grads are null and no dW kernel ran for a frozen weight', () => {
    fc.assert(fc.property(caseArb, (c) => {
      const b = build(c.spec);
      const frozenShapes = b.model.namedModules()
        .filter((e): e is [string, Linear] => e[1] instanceof Linear)
        .map(([, m]) => m.weight.shape.join('x'));
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: false });
      const loss = b.loss(peft);
      const log = profileKernels(() => loss.backward());
      for (const [n, p] of peft.namedParameters()) {
        if (p.requiresGrad) assert.ok(p.grad, `${n} has no grad`);
        else assert.equal(p.grad, null, `${n} is frozen but has a grad`);
      }
      const frozen = new Set(frozenShapes);
      const dW = log.filter((k) => k.kernel === 'matmul' && k.outShape && frozen.has(k.outShape.join('x')));
      assert.deepEqual(dW, [], 'a matmul produced a frozen weight-shaped output');
      assert.ok(log.some((k) => k.kernel === 'matmul'), 'backward ran matmuls for the adapters');
    }), RUNS);
  });

  test('4. merged == unmerged == unloaded (outputs rel 1e-4; unmerge restores W)', () => {
    fc.assert(fc.property(caseArb, (c) => {
      const b = build(c.spec);
      const originals = new Map(expectedTargets(b.model, c.targets));
      const w0 = new Map([...originals].map(([n, l]) => [n, host(l.weight)]));
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: false });
      const unmerged = output(b, peft);
      peft.merge();
      assert.ok(relErr(output(b, peft), unmerged) <= 1e-4, 'merged forward');
      const deltas = new Map(peft.baseModel.loraLayers().map(([n, l]) => [n, host(l.deltaWeight('default'))]));
      peft.unmerge();
      for (const [n, l] of peft.baseModel.loraLayers()) {
        const w = host(l.baseLayer.weight);
        const ref = w0.get(n)!;
        let scale = 0;
        for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]), Math.abs(deltas.get(n)![i]));
        let err = 0;
        for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(w[i] - ref[i]));
        assert.ok(err <= 1e-5 * scale, `unmerge ${n}: ${err} vs scale ${scale}`);
      }
      // W + d - d is not bit-exact in float32; with a large scaling the rounding of W is ~eps*|d|.
      assert.ok(sameValues(output(b, peft), unmerged) || relErr(output(b, peft), unmerged) <= 1e-4, 'unmerged forward');
      const plain = peft.mergeAndUnload();
      assert.ok(plain.namedModules().every(([, m]) => !(m instanceof LoraLinear)), 'a LoRA layer is left');
      for (const [n, l] of originals) assert.equal(plain.getSubmodule(n), l, `${n} is not the original Linear`);
      assert.ok(relErr(output(b, plain), unmerged) <= 1e-4, 'unloaded forward');
      assert.ok(plain.parameters().every((p) => p.requiresGrad), 'original requiresGrad restored');
    }), RUNS);
  });

  test('5. the merged update W\' - W has numerical rank <= r', () => {
    fc.assert(fc.property(caseArb, (c) => {
      const b = build(c.spec);
      const w0 = new Map(expectedTargets(b.model, c.targets).map(([n, l]) => [n, host(l.weight)]));
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: false });
      const layers = peft.baseModel.loraLayers();
      const exact = new Map(layers.map(([n, l]) => {
        const a = host(l.loraA.get('default').weight);
        const bb = host(l.loraB.get('default').weight);
        return [n, matmul64(bb, a, l.outFeatures, c.r, l.inFeatures)] as const;
      }));
      peft.merge();
      for (const [n, l] of layers) {
        const w = host(l.baseLayer.weight);
        const ref = w0.get(n)!;
        const delta = new Float64Array(w.length);
        for (let i = 0; i < w.length; i++) delta[i] = w[i] - ref[i];
        const rank = numericalRank(delta, l.outFeatures, l.inFeatures, 1e-4);
        assert.ok(rank <= c.r, `${n}: rank ${rank} > r ${c.r}`);
        assert.equal(numericalRank(exact.get(n)!, l.outFeatures, l.inFeatures, 1e-9), Math.min(c.r, l.inFeatures, l.outFeatures));
      }
    }), RUNS);
  });

  test('7a. setAdapter switches outputs; disableAdapter equals the base model and restores (even on throw)', () => {
    fc.assert(fc.property(caseArb, (c) => {
      const b = build(c.spec);
      const base = output(b);
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: false }, 'a');
      peft.addAdapter('b', { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: false });
      const outA = output(b, peft);
      assert.ok(!sameValues(outA, base));
      peft.setAdapter('b');
      const outB = output(b, peft);
      assert.ok(!sameValues(outB, outA), 'switching adapters changes the output');
      peft.setAdapter('a');
      assert.ok(sameValues(output(b, peft), outA));
      assert.ok(sameValues(peft.disableAdapter(() => output(b, peft)), base), 'disabled == base');
      assert.throws(() => peft.disableAdapter(() => { throw new Error('boom'); }), /boom/);
      assert.ok(sameValues(output(b, peft), outA), 'adapters restored after a throw');
      peft.deleteAdapter('a');
      assert.equal(peft.activeAdapter, 'b');
      assert.ok(sameValues(output(b, peft), outB));
    }), RUNS);
  });

  test("7b. addWeightedAdapter 'cat' is linear in the weights: delta(w + w') = delta(w) + delta(w') = sum w_i s_i B_i A_i", () => {
    const w = fc.double({ min: -2, max: 2, noNaN: true });
    fc.assert(fc.property(caseArb, fc.integer({ min: 1, max: 3 }), w, w, w, w, (c, r2, w1, w2, v1, v2) => {
      const b = build(c.spec);
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: false }, 'a');
      peft.addAdapter('b', { r: r2, loraAlpha: 2 * c.alpha, targetModules: c.targets, initLoraWeights: false });
      peft.addWeightedAdapter(['a', 'b'], [w1, w2], 'w', 'cat');
      peft.addWeightedAdapter(['a', 'b'], [v1, v2], 'v', 'cat');
      peft.addWeightedAdapter(['a', 'b'], [w1 + v1, w2 + v2], 'wv', 'cat');
      const delta64 = (l: LoraLinear, name: string): Float64Array => {
        const d = matmul64(host(l.loraB.get(name).weight), host(l.loraA.get(name).weight), l.outFeatures, l.r[name], l.inFeatures);
        return d.map((x) => x * l.scaling[name]);
      };
      for (const [n, l] of peft.baseModel.loraLayers()) {
        assert.equal(l.r.wv, c.r + r2, `${n}: cat rank`);
        const da = delta64(l, 'a');
        const db = delta64(l, 'b');
        const dw = delta64(l, 'w');
        const dv = delta64(l, 'v');
        const dwv = delta64(l, 'wv');
        let scale = 1e-12;
        for (let i = 0; i < da.length; i++) scale = Math.max(scale, Math.abs(da[i]) * 4, Math.abs(db[i]) * 4);
        for (let i = 0; i < da.length; i++) {
          assert.ok(Math.abs(dwv[i] - (dw[i] + dv[i])) <= 1e-5 * scale, `${n}: not additive`);
          assert.ok(Math.abs(dw[i] - (w1 * da[i] + w2 * db[i])) <= 1e-5 * scale, `${n}: not the weighted sum`);
        }
      }
    }), RUNS);
  });

  test('8. rsLoRA and rank/alpha patterns give the expected per-layer r and scaling', () => {
    fc.assert(fc.property(caseArb, fc.boolean(), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 32 }), (c, rs, r2, a2) => {
      const b = build(c.spec);
      const kinds = kindsOf(c.spec);
      const rKind = kinds[0];
      const aKind = kinds[kinds.length - 1];
      const peft = getPeftModel(b.model, {
        r: c.r, loraAlpha: c.alpha, targetModules: c.targets, useRslora: rs, rankPattern: { [rKind]: r2 }, alphaPattern: { [aKind]: a2 },
      });
      const hit = (n: string, k: string): boolean => n === k || n.endsWith(`.${k}`);
      for (const [n, l] of peft.baseModel.loraLayers()) {
        const r = hit(n, rKind) ? r2 : c.r;
        const alpha = hit(n, aKind) ? a2 : c.alpha;
        assert.equal(l.r.default, r, `${n}: r`);
        assert.deepEqual([...l.loraA.get('default').weight.shape], [r, l.inFeatures]);
        assert.deepEqual([...l.loraB.get('default').weight.shape], [l.outFeatures, r]);
        assert.equal(l.scaling.default, rs ? alpha / Math.sqrt(r) : alpha / r, `${n}: scaling`);
      }
    }), RUNS);
  });
});
