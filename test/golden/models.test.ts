import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tensor, type Tensor } from '@lowrank/core';
import { TransformerLM, type TransformerConfig } from '@lowrank/nn';
import { fixturesDir } from '../fixtures-dir.ts';


interface FixtureTensor { shape: number[]; data: number[]; dtype?: string }
interface ModelFixture {
  config: TransformerConfig;
  stateDict: Record<string, FixtureTensor>;
  inputIds: FixtureTensor;
  targets: FixtureTensor;
  logits: FixtureTensor;
  loss: number;
  grads: Record<string, FixtureTensor>;
}

const ATOL = 1e-4;
const RTOL = 1e-4;

/** Max |a - e| and the worst (|a - e| - rtol |e|) excess; asserts within atol + rtol |e|. */
function compare(what: string, actual: ArrayLike<number>, expected: FixtureTensor | number[]): { abs: number; rel: number } {
  const exp = Array.isArray(expected) ? expected : expected.data;
  assert.equal(actual.length, exp.length, `${what}: length`);
  let abs = 0;
  let rel = 0;
  for (let i = 0; i < exp.length; i++) {
    const d = Math.abs(actual[i] - exp[i]);
    abs = Math.max(abs, d);
    if (Math.abs(exp[i]) > 1e-6) rel = Math.max(rel, d / Math.abs(exp[i]));
    assert.ok(d <= ATOL + RTOL * Math.abs(exp[i]), `${what}[${i}]: ${actual[i]} vs ${exp[i]} (|diff| ${d})`);
  }
  return { abs, rel };
}

for (const flavour of ['gpt', 'llama'] as const) {
  describe(`golden ${flavour}-tiny`, () => {
    const fx = JSON.parse(readFileSync(path.join(fixturesDir, 'models', `${flavour}-tiny.json`), 'utf8')) as ModelFixture;

    test('state-dict keys match the fixture exactly, in order', () => {
      const model = new TransformerLM(fx.config);
      assert.deepEqual(Object.keys(model.stateDict()), Object.keys(fx.stateDict));
    });

    test('logits, loss and every parameter gradient match PyTorch', () => {
      const model = new TransformerLM(fx.config);
      model.loadStateDict(fx.stateDict);
      const ids = tensor(fx.inputIds.data, { shape: fx.inputIds.shape, dtype: 'int32' });
      const targets = tensor(fx.targets.data, { shape: fx.targets.shape, dtype: 'int32' });
      const { logits, loss } = model.forward(ids, { targets });
      assert.deepEqual([...logits.shape], fx.logits.shape);
      const lg = compare('logits', logits.dataSync(), fx.logits);
      const ls = compare('loss', [loss!.item()], [fx.loss]);
      loss!.backward();
      let gradAbs = 0;
      let gradRel = 0;
      const named = new Map<string, Tensor>(model.namedParameters());
      assert.deepEqual([...named.keys()].sort(), Object.keys(fx.grads).sort());
      for (const [key, expected] of Object.entries(fx.grads)) {
        const g = named.get(key)!.grad;
        assert.ok(g, `${key} has no gradient`);
        assert.deepEqual([...g.shape], expected.shape, `${key} grad shape`);
        const e = compare(`grad ${key}`, g.dataSync(), expected);
        gradAbs = Math.max(gradAbs, e.abs);
        gradRel = Math.max(gradRel, e.rel);
      }
      console.log(`${flavour}-tiny max abs error: logits ${lg.abs.toExponential(2)}, loss ${ls.abs.toExponential(2)}, grads ${gradAbs.toExponential(2)} (max rel ${gradRel.toExponential(2)})`);
    });
  });
}
