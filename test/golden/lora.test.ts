import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tensor, type Tensor } from '@lowrank/core';
import { Linear, TransformerLM, gpt2Small, llama7b, type TransformerConfig } from '@lowrank/nn';
import { LoraLinear, PeftModel, getPeftModel, loadPeftAdapter, setPeftModelStateDict } from '@lowrank/lora';
import '@lowrank/lora/node';
import { fixturesDir } from '../fixtures-dir.ts';


interface FixtureTensor { shape: number[]; data: number[]; dtype?: string }
interface LoraFixture {
  config: TransformerConfig;
  lora: { r: number; loraAlpha: number; loraDropout: number; targetModules: string[]; bias: 'none'; useRslora: boolean; scaling: number };
  stateDict: Record<string, FixtureTensor>;
  loraStateDict: Record<string, FixtureTensor>;
  inputIds: FixtureTensor;
  targets: FixtureTensor;
  logits: FixtureTensor;
  loss: number;
  grads: Record<string, FixtureTensor>;
  mergedWeights: Record<string, FixtureTensor>;
  mergedLogits: FixtureTensor;
}
interface PeftExpected {
  baseModel: string;
  adapter: { r: number; loraAlpha: number; scaling: number; targetModules: string[] };
  inputIds: FixtureTensor;
  targets: FixtureTensor;
  logits: FixtureTensor;
  loss: number;
}

const ATOL = 1e-4;
const RTOL = 1e-4;

/** Asserts |a - e| <= atol + rtol |e| everywhere; returns the max abs error. */
function compare(what: string, actual: ArrayLike<number>, expected: FixtureTensor | number[]): number {
  const exp = Array.isArray(expected) ? expected : expected.data;
  assert.equal(actual.length, exp.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < exp.length; i++) {
    const d = Math.abs(actual[i] - exp[i]);
    worst = Math.max(worst, d);
    assert.ok(d <= ATOL + RTOL * Math.abs(exp[i]), `${what}[${i}]: ${actual[i]} vs ${exp[i]} (|diff| ${d})`);
  }
  return worst;
}

const ids = (t: FixtureTensor): Tensor => tensor(t.data, { shape: t.shape, dtype: 'int32' });
const readJson = <T>(...parts: string[]): T => JSON.parse(readFileSync(path.join(fixturesDir, ...parts), 'utf8')) as T;

for (const flavour of ['gpt', 'llama'] as const) {
  describe(`golden ${flavour}-tiny-lora`, () => {
    const fx = readJson<LoraFixture>('models', `${flavour}-tiny-lora.json`);

    const build = (): PeftModel<TransformerLM> => {
      const model = new TransformerLM(fx.config);
      model.loadStateDict(fx.stateDict);
      const peft = getPeftModel(model, {
        r: fx.lora.r, loraAlpha: fx.lora.loraAlpha, loraDropout: fx.lora.loraDropout,
        targetModules: fx.lora.targetModules, bias: fx.lora.bias, useRslora: fx.lora.useRslora,
      });
      setPeftModelStateDict(peft.baseModel, fx.loraStateDict, 'default');
      return peft;
    };

    test('logits, loss and every lora_A / lora_B gradient match PyTorch; base weights get none', () => {
      const peft = build();
      const { logits, loss } = peft.forward(ids(fx.inputIds), { targets: ids(fx.targets) });
      const lg = compare('logits', logits.dataSync(), fx.logits);
      const ls = compare('loss', [loss!.item()], [fx.loss]);
      loss!.backward();
      let gr = 0;
      const named = new Map(peft.getBaseModel().namedParameters());
      for (const [key, expected] of Object.entries(fx.grads)) {
        const p = named.get(key.replace(/\.(lora_[AB])\.weight$/, '.$1.default.weight'));
        assert.ok(p, `${key} is not a parameter`);
        assert.ok(p.grad, `${key} has no gradient`);
        gr = Math.max(gr, compare(`grad ${key}`, p.grad.dataSync(), expected));
      }
      for (const [key, p] of named) if (!key.includes('lora_')) assert.equal(p.grad, null, `${key} is frozen but has a gradient`);
      console.log(`${flavour}-tiny-lora max abs error: logits ${lg.toExponential(2)}, loss ${ls.toExponential(2)}, lora grads ${gr.toExponential(2)}`);
    });

    test('merged weights and merged logits match; mergeAndUnload gives plain Linears with the same outputs', () => {
      const peft = build();
      const scaling = (peft.getBaseModel().getSubmodule('layers.0.self_attn.q_proj') as LoraLinear).scaling.default;
      assert.equal(scaling, fx.lora.scaling);
      peft.merge();
      let mw = 0;
      for (const [key, expected] of Object.entries(fx.mergedWeights)) {
        const w = peft.getBaseModel().getParameter(key.replace(/\.weight$/, '.base_layer.weight'));
        mw = Math.max(mw, compare(`merged ${key}`, w.dataSync(), expected));
      }
      const merged = compare('merged logits', peft.forward(ids(fx.inputIds)).logits.dataSync(), fx.mergedLogits);
      const plain = peft.mergeAndUnload();
      assert.ok(plain.namedModules().every(([, m]) => !(m instanceof LoraLinear)));
      assert.ok(plain.getSubmodule('layers.0.self_attn.q_proj') instanceof Linear);
      const unloaded = compare('unloaded logits', plain.forward(ids(fx.inputIds)).logits.dataSync(), fx.logits);
      console.log(`${flavour}-tiny-lora max abs error: merged weights ${mw.toExponential(2)}, merged logits ${merged.toExponential(2)}, unloaded logits ${unloaded.toExponential(2)}`);
    });
  });
}

describe('golden PEFT adapter (peft/llama-tiny)', () => {
  const dir = path.join(fixturesDir, 'peft', 'llama-tiny');
  const expected = readJson<PeftExpected>('peft', 'llama-tiny', 'expected.json');
  const base = readJson<{ config: TransformerConfig; stateDict: Record<string, FixtureTensor> }>('models', 'llama-tiny.json');

  test('loads onto llama-tiny (r, alpha, targets from adapter_config.json) and matches logits and loss', async () => {
    const model = new TransformerLM(base.config);
    model.loadStateDict(base.stateDict);
    const warnings: string[] = [];
    const peft = await loadPeftAdapter(model, dir, undefined, { onWarning: (m) => warnings.push(m) });
    assert.deepEqual(warnings, []);
    const cfg = peft.peftConfig.default;
    assert.equal(cfg.r, expected.adapter.r);
    assert.equal(cfg.loraAlpha, expected.adapter.loraAlpha);
    const layers = peft.baseModel.loraLayers();
    assert.equal(layers.length, base.config.nLayer * 7);
    for (const [, l] of layers) assert.equal(l.scaling.default, expected.adapter.scaling);
    const { logits, loss } = peft.forward(ids(expected.inputIds), { targets: ids(expected.targets) });
    const lg = compare('logits', logits.dataSync(), expected.logits);
    const ls = compare('loss', [loss!.item()], [expected.loss]);
    assert.equal(peft.getNbTrainableParameters().trainable, 0, 'fromPretrained loads in inference mode');
    console.log(`peft/llama-tiny max abs error: logits ${lg.toExponential(2)}, loss ${ls.toExponential(2)}`);
  });

  test('PeftModel.fromPretrained is the same load', async () => {
    const model = new TransformerLM(base.config);
    model.loadStateDict(base.stateDict);
    const peft = await PeftModel.fromPretrained(model, dir, { onWarning: () => undefined });
    compare('logits', peft.forward(ids(expected.inputIds)).logits.dataSync(), expected.logits);
  });
});

describe('golden accounting (meta backend)', () => {
  test('gpt2-small, r = 8 on q_proj, v_proj: PEFT\'s exact line', () => {
    const peft = getPeftModel(new TransformerLM(gpt2Small(), { backend: 'meta' }), { r: 8, targetModules: ['q_proj', 'v_proj'] });
    const lines: string[] = [];
    const line = peft.printTrainableParameters((l) => lines.push(l));
    assert.equal(line, 'trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364');
    assert.deepEqual(lines, [line]);
  });

  test('llama-7b, r = 8 on q_proj, v_proj: 4,194,304 trainable of 6,742,609,920', () => {
    const peft = getPeftModel(new TransformerLM(llama7b(), { backend: 'meta' }), { r: 8, targetModules: ['q_proj', 'v_proj'] });
    assert.deepEqual(peft.getNbTrainableParameters(), { trainable: 4_194_304, total: 6_742_609_920 });
    assert.equal(peft.printTrainableParameters(() => undefined), 'trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622');
  });
});
