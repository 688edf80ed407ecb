// Issue 15 defects 2 and 5: a failed restore changes nothing; crafted values are refused.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { globalRng, manualSeed, randn, tensor } from '@lowrank/core';
import {
  AdamW, BatchSampler, LambdaLR, SGD, TransformerLM, cosineWithWarmup, gptTiny, parseCheckpoint, restoreCheckpoint,
  serializeCheckpoint, type Checkpoint, type Resumable,
} from '@lowrank/nn';

function trained(seed: number) {
  manualSeed(seed);
  const model = new TransformerLM(gptTiny());
  const opt = new AdamW(model.parameters(), { lr: 1e-2 });
  const sampler = new BatchSampler(new Int32Array(64).map((_, i) => i % 23), { batchSize: 2, blockSize: 8, seed });
  const sched = new LambdaLR(opt, cosineWithWarmup({ warmupSteps: 1, totalSteps: 10 }));
  const ids = tensor(new Int32Array(16).map((_, i) => (i * 7) % 23), { dtype: 'int32', shape: [2, 8] });
  const targets = tensor(new Int32Array(16).map((_, i) => (i * 5 + 1) % 23), { dtype: 'int32', shape: [2, 8] });
  model.forward(ids, { targets }).loss!.backward();
  opt.step();
  sched.step();
  return { model, opt, sampler, sched };
}

type Run = ReturnType<typeof trained>;

/** Model values, optimizer state, sampler and core RNG state: what a failed restore must leave alone. */
function state(r: Run): string {
  return JSON.stringify({
    model: r.model.namedParameters().map(([n, p]) => [n, Array.from(p.dataSync())]),
    opt: r.opt.stateDict(),
    sampler: r.sampler.getState(),
    rng: globalRng.getState(),
    lr: r.sched.getLastLr(),
  }, (_k, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : Number.isNaN(v) ? 'NaN' : v));
}

const ckptOf = (r: Run, over: Partial<{ sampler: Resumable | undefined }> = {}): Checkpoint =>
  parseCheckpoint(serializeCheckpoint({ model: r.model, optimizer: r.opt, scheduler: r.sched, step: 1, sampler: 'sampler' in over ? over.sampler : r.sampler }));

describe('failing restores change nothing', () => {
  const source = trained(1);
  const good = ckptOf(source);
  const noSampler = ckptOf(source, { sampler: undefined });
  /** Ways a restore fails, each on a fresh target. */
  const failures: Record<string, (t: Run) => Parameters<typeof restoreCheckpoint>> = {
    sgdIntoAdamW: (t) => [good, { model: t.model, optimizer: new SGD(t.model.parameters(), { lr: 0.1 }), sampler: t.sampler }],
    noSamplerState: (t) => [noSampler, { model: t.model, optimizer: t.opt, sampler: t.sampler }],
    missingKey: (t) => [{ ...good, model: Object.fromEntries(Object.entries(good.model).slice(1)) }, { model: t.model, optimizer: t.opt }],
    wrongShape: (t) => {
      const [k, v] = Object.entries(good.model)[0];
      return [{ ...good, model: { ...good.model, [k]: { ...v, shape: [v.data.length] } } }, { model: t.model, optimizer: t.opt }];
    },
    zeroRng: (t) => [{ ...good, rng: [0, 0, 0, 0, NaN] }, { model: t.model, optimizer: t.opt, sampler: t.sampler }],
    stringLr: (t) => {
      const opt = { ...good.optimizer!, groups: good.optimizer!.groups.map((g) => ({ ...g, hyper: { ...g.hyper, lr: 'fast' as unknown as number } })) };
      return [{ ...good, optimizer: opt }, { model: t.model, optimizer: t.opt, sampler: t.sampler }];
    },
    nanEps: (t) => {
      const opt = { ...good.optimizer!, groups: good.optimizer!.groups.map((g) => ({ ...g, hyper: { ...g.hyper, eps: NaN } })) };
      return [{ ...good, optimizer: opt }, { model: t.model, optimizer: t.opt }];
    },
    badSamplerWords: (t) => [{ ...good, sampler: [1.5, 2, 3, 4] }, { model: t.model, optimizer: t.opt, sampler: t.sampler }],
    schedulerMismatch: (t) => [{ ...good, scheduler: { lastStep: 1, baseLrs: [1, 2] } }, { model: t.model, optimizer: t.opt, scheduler: t.sched }],
  };
  for (const [name, make] of Object.entries(failures)) {
    test(`${name}: throws and the model, optimizer, sampler and RNG are exactly as before`, () => {
      const t = trained(2);
      const before = state(t);
      assert.throws(() => restoreCheckpoint(...make(t)), /nothing was restored/);
      assert.equal(state(t), before);
    });
  }
  test('property: random failing restores, compared before and after', () => {
    const t = trained(3);
    fc.assert(fc.property(fc.constantFrom(...Object.keys(failures)), fc.integer({ min: 0, max: 3 }), (name, junk) => {
      for (let i = 0; i < junk; i++) randn([2]).dispose(); // move the core RNG so "as before" is not "as at build"
      const before = state(t);
      assert.throws(() => restoreCheckpoint(...failures[name](t)));
      assert.equal(state(t), before);
    }), { numRuns: 40 });
  });
  test('the good checkpoint still restores', () => {
    const t = trained(4);
    assert.equal(restoreCheckpoint(good, { model: t.model, optimizer: t.opt, sampler: t.sampler, scheduler: t.sched }), 1);
  });
});

describe('crafted values with a valid checksum are refused at parse time', () => {
  const r = trained(5);
  const crafted = (edit: (o: AdamW) => void): Uint8Array => {
    const opt = new AdamW(r.model.parameters(), { lr: 1e-3 });
    edit(opt);
    return serializeCheckpoint({ model: r.model, optimizer: opt, step: 3 });
  };
  test("lr 'fast', lr NaN, betas out of range", () => {
    assert.throws(() => restoreCheckpoint(parseCheckpoint(crafted((o) => (o.paramGroups[0].hyper.lr = 'fast' as unknown as number))), { model: r.model, optimizer: r.opt }),
      /hyperparameter 'lr' must be a finite number, got "fast"/);
    assert.throws(() => restoreCheckpoint(parseCheckpoint(crafted((o) => (o.paramGroups[0].hyper.lr = NaN))), { model: r.model, optimizer: r.opt }),
      /hyperparameter 'lr' must be a finite number/);
    assert.throws(() => restoreCheckpoint(parseCheckpoint(crafted((o) => (o.paramGroups[0].hyper.betas = [1.5, 0.9]))), { model: r.model, optimizer: r.opt }),
      /betas must be in \[0, 1\)/);
  });
  test('an all-zero, NaN or string RNG state is refused (randn looped forever)', () => {
    const real = globalRng.getState.bind(globalRng);
    for (const bad of [[0, 0, 0, 0, NaN], [NaN, 1, 2, 3, NaN], ['a', 1, 2, 3, NaN]]) {
      globalRng.getState = () => bad as number[];
      let bytes: Uint8Array;
      try {
        bytes = serializeCheckpoint({ model: r.model, step: 1 });
      } finally {
        globalRng.getState = real;
      }
      assert.throws(() => parseCheckpoint(bytes), /rng (is all zeros|must hold uint32 integers)/);
    }
    assert.throws(() => globalRng.setState([0, 0, 0, 0, NaN]), /all-zero state is invalid/);
    assert.throws(() => globalRng.setState(['x', 1, 2, 3, 0] as unknown as number[]), /expected 4 uint32 integers/);
  });
  test('a negative or fractional step is refused', () => {
    assert.throws(() => parseCheckpoint(serializeCheckpoint({ model: r.model, step: -1 })), /step must be a non-negative integer, got -1/);
  });
});
