import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Linear, TransformerLM, gpt2Small, llama7b } from '@lowrank/nn';
import {
  LoraConfig, estimateMemory, getPatternKey, getPeftModel, loraConfigFromPeftJson, loraConfigToPeftJson, matchesTarget,
  renderMemoryTable, renderSavingsTable, savingsTable, type LoraConfigInput,
} from '@lowrank/lora';
import { build, output, relErr } from './helpers.ts';

describe('LoraConfig', () => {
  test("PEFT's defaults", () => {
    const c = new LoraConfig();
    assert.equal(c.r, 8);
    assert.equal(c.loraAlpha, 8);
    assert.equal(c.loraDropout, 0);
    assert.equal(c.bias, 'none');
    assert.equal(c.initLoraWeights, true);
    assert.equal(c.useRslora, false);
    assert.equal(c.modulesToSave, null);
    assert.deepEqual({ ...c.rankPattern }, {});
  });

  const invalid: [LoraConfigInput, RegExp][] = [
    [{ r: 0 }, /r must be a positive integer, got 0/],
    [{ r: 2.5 }, /r must be a positive integer, got 2\.5/],
    [{ loraAlpha: Number.NaN }, /loraAlpha must be a finite number, got NaN/],
    [{ loraDropout: 1 }, /loraDropout must be in \[0, 1\), got 1/],
    [{ targetModules: [] }, /targetModules must be a non-empty list/],
    [{ targetModules: ['q_proj', ''] }, /targetModules must be a list of non-empty strings, got ''/],
    [{ targetModules: '(' }, /targetModules "\(" is not a supported pattern: missing '\)'/],
    [{ bias: 'some' as never }, /bias must be one of 'none', 'all', 'lora_only', got 'some'/],
    [{ initLoraWeights: 'pissa' as never }, /initLoraWeights must be true, false or 'gaussian', got 'pissa'/],
    [{ rankPattern: { q_proj: 0 } }, /rankPattern\['q_proj'\] must be a positive integer, got 0/],
    [{ alphaPattern: { q_proj: Infinity } }, /alphaPattern\['q_proj'\] must be a finite number/],
  ];
  for (const [input, msg] of invalid) {
    test(`rejects ${JSON.stringify(input)}`, () => assert.throws(() => new LoraConfig(input), msg));
  }

  test('target matching: exact or dotted suffix for lists; full match for a string or RegExp', () => {
    const rows: [string, Parameters<typeof matchesTarget>[1], boolean][] = [
      ['layers.0.self_attn.q_proj', ['q_proj'], true],
      ['layers.0.self_attn.q_proj', ['self_attn.q_proj'], true],
      ['layers.0.self_attn.q_proj', ['proj'], false],
      ['q_proj', ['q_proj'], true],
      ['layers.0.self_attn.q_proj', '.*\\.(q|v)_proj', true],
      ['layers.0.self_attn.k_proj', '.*\\.(q|v)_proj', false],
      ['layers.0.self_attn.q_proj', 'q_proj', false],
      ['layers.1.mlp.up_proj', /layers\.1\..*/, true],
      ['layers.10.mlp.up_proj', /layers\.1\..*/, false],
    ];
    for (const [name, t, want] of rows) assert.equal(matchesTarget(name, t), want, `${name} vs ${String(t)}`);
  });

  test("pattern keys follow PEFT's get_pattern_key", () => {
    assert.equal(getPatternKey(['q_proj'], 'layers.0.self_attn.q_proj'), 'q_proj');
    assert.equal(getPatternKey(['layers.0.self_attn.q_proj'], 'layers.0.self_attn.q_proj'), 'layers.0.self_attn.q_proj');
    assert.equal(getPatternKey(['proj'], 'layers.0.self_attn.q_proj'), null);
    assert.equal(getPatternKey(['layers\\.1\\..*'], 'layers.1.mlp.up_proj'), 'layers\\.1\\..*');
    const c = new LoraConfig({ r: 4, loraAlpha: 8, rankPattern: { q_proj: 2 }, alphaPattern: { v_proj: 2 }, useRslora: true });
    assert.deepEqual(c.layerSettings('layers.0.self_attn.q_proj'), { r: 2, alpha: 8, scaling: 8 / Math.SQRT2 });
    assert.deepEqual(c.layerSettings('layers.0.self_attn.v_proj'), { r: 4, alpha: 2, scaling: 1 });
  });

  test('adapter_config.json round trip', () => {
    const c = new LoraConfig({ r: 4, loraAlpha: 16, targetModules: ['v_proj', 'q_proj'], bias: 'lora_only', useRslora: true, rankPattern: { q_proj: 2 }, initLoraWeights: 'gaussian' });
    const json = loraConfigToPeftJson(c);
    assert.deepEqual(json.target_modules, ['q_proj', 'v_proj']);
    const back = loraConfigFromPeftJson(JSON.parse(JSON.stringify(json)), { onWarning: (m) => assert.fail(m) });
    assert.deepEqual(loraConfigToPeftJson(back), json);
    assert.throws(() => loraConfigFromPeftJson({ ...json, use_dora: true }), /DoRA/);
    assert.throws(() => loraConfigFromPeftJson({ ...json, peft_type: 'IA3' }), /peft_type must be 'LORA'/);
  });
});

describe('getPeftModel errors', () => {
  const spec = { kind: 'gpt' as const, nEmbd: 8, nHead: 2, nLayer: 1, inter: 20, vocab: 11, batch: 1, seq: 3, seed: 1 };

  test('no module matched lists available Linear names', () => {
    const b = build(spec);
    assert.throws(() => getPeftModel(b.model, { targetModules: ['qkv'] }), /no module matched targetModules \['qkv'\].*'q_proj'.*'up_proj'/);
  });

  test('a target that is not a Linear is an error naming it, and the model is untouched', () => {
    const b = build(spec);
    const keys = Object.keys(b.model.stateDict());
    assert.throws(() => getPeftModel(b.model, { targetModules: ['q_proj', 'input_layernorm'] }), /'layers\.0\.input_layernorm' is a LayerNorm, not a Linear/);
    assert.deepEqual(Object.keys(b.model.stateDict()), keys);
    assert.ok(b.model.namedParameters().every(([, p]) => p.requiresGrad));
  });

  test("'all-linear' adapts every Linear except lm_head", () => {
    const b = build(spec);
    const peft = getPeftModel(b.model, { targetModules: 'all-linear', r: 2 });
    const names = peft.baseModel.loraLayers().map(([n]) => n);
    assert.deepEqual(names, ['layers.0.self_attn.q_proj', 'layers.0.self_attn.k_proj', 'layers.0.self_attn.v_proj', 'layers.0.self_attn.o_proj', 'layers.0.mlp.up_proj', 'layers.0.mlp.down_proj']);
    assert.ok(peft.getBaseModel().getSubmodule('lm_head') instanceof Linear);
  });

  test("in-memory state-dict keys are PEFT's", () => {
    const peft = getPeftModel(build(spec).model, { r: 2, targetModules: ['q_proj'] });
    const keys = Object.keys(peft.stateDict());
    for (const k of ['base_model.model.layers.0.self_attn.q_proj.base_layer.weight', 'base_model.model.layers.0.self_attn.q_proj.base_layer.bias',
      'base_model.model.layers.0.self_attn.q_proj.lora_A.default.weight', 'base_model.model.layers.0.self_attn.q_proj.lora_B.default.weight',
      'base_model.model.layers.0.self_attn.k_proj.weight']) {
      assert.ok(keys.includes(k), `missing ${k}`);
    }
  });

  test("addWeightedAdapter 'linear' needs equal ranks and follows PEFT (sqrt(w s) on A and B)", () => {
    const b = build(spec);
    const peft = getPeftModel(b.model, { r: 2, loraAlpha: 4, targetModules: ['q_proj'], initLoraWeights: false }, 'a');
    peft.addAdapter('b', { r: 2, loraAlpha: 8, targetModules: ['q_proj'], initLoraWeights: false });
    peft.addAdapter('c', { r: 3, targetModules: ['q_proj'] });
    assert.throws(() => peft.addWeightedAdapter(['a', 'c'], [1, 1], 'ac', 'linear'), /same r/);
    peft.addWeightedAdapter(['a', 'b'], [0.3, 0.7], 'ab', 'linear');
    const [, l] = peft.baseModel.loraLayers()[0];
    const A = (n: string): Float32Array => Float32Array.from(l.loraA.get(n).weight.dataSync());
    const c1 = Math.sqrt(0.3 * 2);
    const c2 = Math.sqrt(0.7 * 4);
    const expectA = A('a').map((v, i) => c1 * v + c2 * A('b')[i]);
    assert.ok(relErr(A('ab'), expectA) < 1e-6);
    assert.equal(l.scaling.ab, 1);
  });

  test('a merged adapter cannot be deleted; after unmerge + delete the model is the base again', () => {
    const b = build(spec);
    const base = output(b);
    const peft = getPeftModel(b.model, { r: 2, targetModules: ['q_proj'], initLoraWeights: false });
    peft.merge();
    assert.throws(() => peft.deleteAdapter('default'), /merged/);
    peft.unmerge();
    peft.deleteAdapter('default');
    assert.ok(relErr(output(b, peft), base) < 1e-6);
  });
});

describe('accounting', () => {
  test('savingsTable: per layer in*out vs r(in+out), totals equal the trainable count', () => {
    const model = new TransformerLM(gpt2Small(), { backend: 'meta' });
    const t = savingsTable(model, { r: 8, targetModules: ['q_proj', 'v_proj'] });
    assert.equal(t.rows.length, 24);
    assert.deepEqual(t.rows[0], { name: 'layers.0.self_attn.q_proj', in: 768, out: 768, r: 8, fullParams: 589_824, loraParams: 12_288, ratio: 12_288 / 589_824 });
    assert.equal(t.totals.loraParams, 294_912);
    const text = renderSavingsTable(t);
    assert.match(text, /layers\.11\.self_attn\.v_proj/);
    assert.match(text, /^total\s+14,155,776\s+294,912\s+0\.0208$/m);
    assert.ok(model.namedModules().every(([, m]) => m.constructor.name !== 'LoraLinear'), 'savingsTable does not modify the model');
  });

  test('estimateMemory: llama-7b full vs LoRA on meta, in well under a few seconds', () => {
    const t0 = performance.now();
    const full = estimateMemory('llama-7b', null, { mode: 'full', optimizer: 'adamw', batch: 1, seq: 512 });
    const lora = estimateMemory(llama7b(), { r: 8, targetModules: ['q_proj', 'v_proj'] }, { mode: 'lora', optimizer: 'adamw', batch: 1, seq: 512 });
    const ms = performance.now() - t0;
    assert.ok(ms < 5000, `took ${ms} ms`);
    assert.equal(full.weights, 6_738_415_616 * 4);
    assert.equal(full.gradients, 6_738_415_616 * 4);
    assert.equal(full.optimizerState, 6_738_415_616 * 8);
    assert.equal(lora.trainableParams, 4_194_304);
    assert.equal(lora.weights, 6_742_609_920 * 4);
    assert.equal(lora.gradients, 4_194_304 * 4);
    assert.equal(lora.optimizerState, 4_194_304 * 8);
    assert.ok(full.activations > 512 * 32000 * 4, 'activations include at least the logits');
    assert.ok(lora.total < full.total / 2);
    const text = renderMemoryTable([full, lora]);
    assert.match(text, /optimizer/);
    console.log(`llama-7b estimate (${ms.toFixed(0)} ms):\n${text}`);
  });

  test('estimateMemory activations grow with batch and seq', () => {
    const cfg = { flavour: 'gpt' as const, vocabSize: 50, nEmbd: 16, nHead: 2, nLayer: 2, blockSize: 32 };
    const a = estimateMemory(cfg, null, { mode: 'full', batch: 1, seq: 8 });
    const b = estimateMemory(cfg, null, { mode: 'full', batch: 2, seq: 8 });
    const c = estimateMemory(cfg, null, { mode: 'full', batch: 1, seq: 16 });
    assert.ok(b.activations > a.activations && c.activations > a.activations);
    assert.throws(() => estimateMemory(cfg, null, { mode: 'full', batch: 1, seq: 64 }), /seq must be an integer in \[1, 32\]/);
  });
});
