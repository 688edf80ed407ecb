/**
 * fromPretrained({ dtype }): the weight matrices of every fixture under
 * fixtures/hf stored in 16 bits (read straight from a checkpoint stored so),
 * frozen, counted at 2 bytes each, and the logits those of a float32 load
 * whose weight matrices were rounded the same way.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { cast, memory, noGrad, tensor, type Tensor } from '@lowrank/core';
import { AutoModelForCausalLM, type ModelSource, type PreTrainedModel } from '@lowrank/nn';
import '@lowrank/nn/node';
import { hfFixtures } from './helpers.ts';

const fixtures = hfFixtures();

/** Each distinct parameter once (tied weights are one tensor). */
function distinctParams(model: PreTrainedModel): Tensor[] {
  return [...new Set(model.parameters())];
}

/** The float32 load with every weight matrix rounded to `dtype` and widened back (still float32). */
async function roundedFloat32(dir: string, dtype: 'bfloat16' | 'float16'): Promise<PreTrainedModel> {
  const model = await AutoModelForCausalLM.fromPretrained(dir);
  noGrad(() => {
    for (const p of distinctParams(model)) {
      if (p.rank < 2) continue;
      const half = cast(p, dtype);
      const back = cast(half, 'float32');
      p.assign(back);
      half.dispose();
      back.dispose();
    }
  });
  return model;
}

test('fixtures/hf holds model directories', () => {
  assert.ok(fixtures.length >= 1, 'no fixtures/hf/<name>/config.json + expected.json found');
});

for (const fx of fixtures) {
  describe(`fromPretrained dtype, fixture ${fx.name}`, () => {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      test(`${dtype}: weight matrices stored 16-bit and frozen, 2 bytes each, logits equal the float32 load of the rounded weights`, async () => {
        const before = memory().liveBytes;
        const model = await AutoModelForCausalLM.fromPretrained(fx.dir, { dtype });
        const loaded = memory().liveBytes - before;
        const params = distinctParams(model);
        let expected = 0;
        for (const p of params) {
          if (p.rank >= 2) {
            assert.equal(p.dtype, dtype, `${p.name}`);
            assert.equal(p.requiresGrad, false, `${p.name} is frozen`);
            expected += 2 * p.size;
          } else {
            assert.equal(p.dtype, 'float32', `${p.name}`);
            expected += 4 * p.size;
          }
        }
        assert.equal(loaded, expected, 'memory accounting: 2 bytes per 16-bit element, nothing else kept');
        const ref = await roundedFloat32(fx.dir, dtype);
        const e = fx.expected.inputIds;
        const ids = tensor(e.data, { shape: e.shape, dtype: 'int32' });
        const got = noGrad(() => model.forward(ids).logits.dataSync());
        const want = noGrad(() => ref.forward(ids).logits.dataSync());
        assert.equal(got.length, want.length);
        for (let i = 0; i < got.length; i++) {
          const tol = 1e-5 * Math.max(1, Math.abs(want[i]));
          assert.ok(Math.abs(got[i] - want[i]) <= tol, `${fx.name} ${dtype} logit ${i}: ${got[i]} vs ${want[i]}`);
        }
      });
    }

    test('a 16-bit load reads the weights tensor by tensor (range reads), never the whole shard at once', async () => {
      const whole: string[] = [];
      let largest = 0;
      const bytesOf = (name: string): Uint8Array | null => {
        try {
          return new Uint8Array(readFileSync(path.join(fx.dir, name)));
        } catch {
          return null;
        }
      };
      const src: ModelSource = {
        describe: `${fx.name} (counting reads)`,
        read: async (name) => {
          if (name.endsWith('.safetensors')) whole.push(name);
          return bytesOf(name);
        },
        readRange: async (name, start, end) => {
          const b = bytesOf(name)?.subarray(start, end) ?? null;
          if (b && start > 0) largest = Math.max(largest, b.length);
          return b;
        },
        size: async (name) => bytesOf(name)?.length ?? null,
      };
      const model = await AutoModelForCausalLM.fromPretrained(src, { dtype: 'bfloat16' });
      assert.deepEqual(whole, [], 'no whole-shard read');
      const biggest = Math.max(...distinctParams(model).map((p) => p.size));
      assert.ok(largest > 0 && largest <= 4 * biggest, `largest read ${largest} bytes, largest tensor ${biggest} elements`);
    });

    test('a bad dtype is an error naming the option', async () => {
      await assert.rejects(AutoModelForCausalLM.fromPretrained(fx.dir, { dtype: 'int8' as 'float32' }), /fromPretrained: dtype must be 'float32', 'bfloat16' or 'float16', got "int8"/);
    });
  });
}
