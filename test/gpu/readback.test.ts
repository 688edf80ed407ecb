import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend, manualSeed, registerBackend, sum, tensor, type DType, type HostArray } from '@lowrank/core';
import { AdamW, TransformerLM, trainStep, trainStepAsync, w2, type Batch } from '@lowrank/nn';
import { lcg, randArray } from './harness.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

/** A backend that, like WebGPU, reads back only asynchronously (values from the cpu kernels). */
class AsyncOnlyBackend extends CpuBackend {
  readonly syncReadback = false;
  asyncReads = 0;

  async downloadAsync(data: unknown, dtype: DType, size: number): Promise<HostArray> {
    this.asyncReads++;
    await new Promise((r) => setTimeout(r, 1));
    return this.download(data as never, dtype, size);
  }
}

const asyncOnly = new AsyncOnlyBackend('async-only');
registerBackend('async-only', asyncOnly);

const tinyLm = { ...w2(17), blockSize: 8, nLayer: 1, nEmbd: 16, nHead: 2, headDim: 8, intermediateSize: 32 };

const backends = ['cpu', ...modesUnderTest.map((m) => backendFor(m).name), 'async-only'];

describe('async readback', () => {
  for (const name of backends) {
    test(`await data(), array(), itemAsync() on ${name}`, async () => {
      const values = randArray(6, lcg(4));
      const t = tensor(values, { shape: [2, 3], backend: name });
      const want = Array.from(values);
      assert.deepEqual(Array.from(await t.data()), want);
      const rows = (await t.array()) as number[][];
      assert.deepEqual([rows.length, rows[0].length], [2, 3]);
      assert.deepEqual(rows.flat(), want);
      const total = await sum(t).itemAsync();
      assert.ok(Math.abs(total - want.reduce((s, v) => s + v, 0)) < 1e-5, `sum ${total}`);
      await assert.rejects(() => t.itemAsync(), /itemAsync: expected a tensor with one element/);
      if (name !== 'async-only') {
        assert.deepEqual(Array.from(t.dataSync()), want);
        assert.equal(sum(t).item(), total);
      }
      t.dispose();
    });
  }

  test('synchronous readers on an async-only backend throw, naming the async reader', async () => {
    const t = tensor([1, 2, 3], { backend: 'async-only' });
    assert.throws(() => t.dataSync(), /dataSync\(\): the 'async-only' backend .* reads back only asynchronously; use await t\.data\(\)/);
    assert.throws(() => t.toArray(), /toArray\(\).*use await t\.array\(\)/);
    assert.throws(() => sum(t).item(), /item\(\).*use await t\.itemAsync\(\)/);
    const before = asyncOnly.asyncReads;
    assert.deepEqual(await t.array(), [1, 2, 3]);
    assert.equal(asyncOnly.asyncReads, before + 1, 'array() did not go through downloadAsync');
  });

  test('trainStepAsync and generateAsync run where only asynchronous readback exists, matching cpu', async () => {
    const batch: Batch = {
      x: Int32Array.from([1, 4, 2, 8, 5, 7, 3, 6]), y: Int32Array.from([4, 2, 8, 5, 7, 3, 6, 9]), shape: [1, 8], offsets: Int32Array.from([0]),
    };
    const run = async (backend: string, sync: boolean) => {
      manualSeed(3);
      const model = new TransformerLM(tinyLm, { backend });
      const opt = new AdamW(model.parameters(), { lr: 1e-2 });
      const step = sync ? trainStep(model, opt, batch) : await trainStepAsync(model, opt, batch);
      const prompt = tensor([[1, 2, 3]], { dtype: 'int32', backend });
      const out = sync ? model.generate(prompt, { maxNewTokens: 4, temperature: 0 }) : await model.generateAsync(prompt, { maxNewTokens: 4, temperature: 0 });
      return { loss: step.loss, tokens: (await out.array()) as number[][] };
    };
    const ref = await run('cpu', true);
    const got = await run('async-only', false);
    assert.ok(Number.isFinite(got.loss));
    assert.ok(Math.abs(got.loss - ref.loss) < 1e-6, `loss ${got.loss} vs cpu ${ref.loss}`);
    assert.deepEqual(got.tokens, ref.tokens);
    manualSeed(3);
    const model = new TransformerLM(tinyLm, { backend: 'async-only' });
    assert.throws(() => trainStep(model, new AdamW(model.parameters()), batch), /itemAsync/);
  });
});
