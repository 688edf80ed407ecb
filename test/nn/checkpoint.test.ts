import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { globalRng, manualSeed } from '@lowrank/core';
import {
  AdamW, BatchSampler, LambdaLR, TransformerLM, cosineWithWarmup, gptTiny, llamaTiny,
  restoreCheckpoint, train, trainStep, type TransformerConfig,
} from '@lowrank/nn';
import { loadCheckpoint, saveCheckpoint } from '@lowrank/nn/node';

const dir = mkdtempSync(join(tmpdir(), 'lowrank-ckpt-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const corpus = Int32Array.from({ length: 400 }, (_, i) => (i * 7 + (i % 5)) % 23);

function setup(cfg: TransformerConfig, seed = 0): { model: TransformerLM; opt: AdamW; sampler: BatchSampler; sched: LambdaLR } {
  manualSeed(seed);
  const model = new TransformerLM({ ...cfg, dropout: 0.1 });
  const opt = new AdamW(model.parameters(), { lr: 1e-2 });
  const sched = new LambdaLR(opt, cosineWithWarmup({ warmupSteps: 2, totalSteps: 20 }));
  const sampler = new BatchSampler(corpus, { batchSize: 3, blockSize: 8, seed: 5 });
  return { model, opt, sampler, sched };
}

function bits(m: TransformerLM): Map<string, number[]> {
  return new Map(Object.entries(m.stateDict()).map(([k, t]) => [k, Array.from(new Uint32Array(Float32Array.from(t.dataSync()).buffer))]));
}

describe('checkpoints', () => {
  test('save -> load round trip is bit-exact (model, optimizer, rng, sampler)', async () => {
    const a = setup(gptTiny());
    for (let i = 0; i < 3; i++) trainStep(a.model, a.opt, a.sampler.next(), { scheduler: a.sched });
    const path = join(dir, 'a.ckpt');
    await saveCheckpoint(path, { model: a.model, optimizer: a.opt, scheduler: a.sched, step: 3, sampler: a.sampler, extra: { note: 'hi' } });
    const ckpt = await loadCheckpoint(path);
    assert.equal(ckpt.step, 3);
    assert.deepEqual(ckpt.extra, { note: 'hi' });
    const b = setup(gptTiny(), 99);
    const step = restoreCheckpoint(ckpt, { model: b.model, optimizer: b.opt, scheduler: b.sched, sampler: b.sampler });
    assert.equal(step, 3);
    assert.deepEqual(bits(b.model), bits(a.model));
    assert.deepEqual(b.opt.stateDict(), a.opt.stateDict());
    assert.deepEqual(b.sampler.getState(), a.sampler.getState());
    assert.deepEqual(globalRng.getState(), ckpt.rng);
  });

  for (const cfg of [gptTiny, llamaTiny]) {
    test(`${cfg().flavour}: resuming reproduces the next step's loss bit-exactly (dropout on)`, async () => {
      const a = setup(cfg());
      for (let i = 0; i < 4; i++) trainStep(a.model, a.opt, a.sampler.next(), { scheduler: a.sched });
      const path = join(dir, `resume-${cfg().flavour}.ckpt`);
      await saveCheckpoint(path, { model: a.model, optimizer: a.opt, scheduler: a.sched, step: 4, sampler: a.sampler });
      const next = [0, 1].map(() => trainStep(a.model, a.opt, a.sampler.next(), { scheduler: a.sched }).loss);
      const b = setup(cfg(), 123);
      restoreCheckpoint(await loadCheckpoint(path), { model: b.model, optimizer: b.opt, scheduler: b.sched, sampler: b.sampler });
      const resumed = [0, 1].map(() => trainStep(b.model, b.opt, b.sampler.next(), { scheduler: b.sched }).loss);
      assert.deepEqual(resumed, next);
      assert.deepEqual(bits(b.model), bits(a.model));
    });
  }

  test('truncated and corrupted files are rejected with a clear error', async () => {
    const a = setup(gptTiny());
    const path = join(dir, 'good.ckpt');
    await saveCheckpoint(path, { model: a.model, optimizer: a.opt, step: 0, sampler: a.sampler });
    const bytes = readFileSync(path);
    for (const cut of [1, 10, Math.floor(bytes.length / 2), bytes.length - 1]) {
      const bad = join(dir, `cut-${cut}.ckpt`);
      writeFileSync(bad, bytes.subarray(0, cut));
      await assert.rejects(loadCheckpoint(bad), /not a valid checkpoint/);
    }
    for (const at of [Math.floor(bytes.length * 0.3), Math.floor(bytes.length * 0.7), bytes.length - 40]) {
      const flipped = Buffer.from(bytes);
      flipped[at] ^= 0x10;
      const bad = join(dir, `flip-${at}.ckpt`);
      writeFileSync(bad, flipped);
      await assert.rejects(loadCheckpoint(bad), /not a valid checkpoint/);
    }
    await assert.rejects(loadCheckpoint(join(dir, 'missing.ckpt')), /ENOENT/);
  });

  test('restore into a different architecture fails and names the keys', async () => {
    const a = setup(gptTiny());
    const path = join(dir, 'arch.ckpt');
    await saveCheckpoint(path, { model: a.model, step: 0 });
    const other = new TransformerLM(llamaTiny());
    const ckpt = await loadCheckpoint(path);
    assert.throws(() => restoreCheckpoint(ckpt, { model: other }), /Unexpected key.*embed_positions/s);
  });

  test('train() checkpoints every N steps, evaluates, and reports progress lines', async () => {
    const a = setup(gptTiny());
    const val = new BatchSampler(corpus, { batchSize: 2, blockSize: 8, seed: 9 });
    const lines: string[] = [];
    const path = join(dir, 'train.ckpt');
    const result = await train({
      model: a.model, optimizer: a.opt, scheduler: a.sched, train: a.sampler, val, steps: 6,
      evalEvery: 3, evalBatches: 2, checkpointPath: path, checkpointEvery: 2, gradClip: 1, progress: (l) => lines.push(l),
    });
    assert.equal(result.losses.length, 6);
    assert.deepEqual(result.valLosses.map((v) => v.step), [3, 6]);
    assert.ok(lines.some((l) => /step 6\/6 \| loss \d+\.\d{4} \| [\d,]+ tok\/s \| ETA/.test(l)), lines.join('\n'));
    assert.equal((await loadCheckpoint(path)).step, 6);
  });
});

describe('checkpoint bytes (no file system)', () => {
  test('the SHA-256 is the one node:crypto computes, over any split of the input', async () => {
    const { createHash } = await import('node:crypto');
    const { Sha256 } = await import('../../packages/nn/src/sha256.ts');
    await import('fast-check').then(({ default: fc }) => fc.assert(fc.property(
      fc.uint8Array({ maxLength: 300 }), fc.nat(300), fc.string(), (bytes, cut, text) => {
        const at = Math.min(cut, bytes.length);
        const ours = new Sha256().update(bytes.subarray(0, at)).update(text).update(bytes.subarray(at)).hex();
        const ref = createHash('sha256').update(bytes.subarray(0, at)).update(text).update(bytes.subarray(at)).digest('hex');
        assert.equal(ours, ref);
      })));
  });

  test('serializeCheckpoint -> parseCheckpoint restores the model; train() hands the bytes to onCheckpoint', async () => {
    const { parseCheckpoint, serializeCheckpoint } = await import('@lowrank/nn');
    manualSeed(1);
    const cfg = gptTiny();
    const model = new TransformerLM(cfg);
    const sampler = new BatchSampler(Int32Array.from({ length: 200 }, (_, i) => (i * 7) % cfg.vocabSize), { batchSize: 2, blockSize: 8, seed: 4 });
    const got: number[] = [];
    let last: Uint8Array | null = null;
    await train({
      model, optimizer: new AdamW(model.parameters(), { lr: 1e-2 }), train: sampler, steps: 2, checkpointEvery: 1, progress: false,
      onCheckpoint: (bytes, step) => { got.push(step); last = bytes; },
    });
    assert.deepEqual(got, [1, 2]);
    const ckpt = parseCheckpoint(last!);
    assert.equal(ckpt.step, 2);
    const again = new TransformerLM(cfg);
    restoreCheckpoint(ckpt, { model: again, rng: false });
    const a = serializeCheckpoint({ model, step: 2 });
    const b = serializeCheckpoint({ model: again, step: 2 });
    assert.equal(Buffer.compare(Buffer.from(a), Buffer.from(b)), 0);
  });
});
