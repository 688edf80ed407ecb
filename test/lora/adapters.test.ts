import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { decodeSafetensors, encodeSafetensors, manualSeed, tensor, type RawTensor, type Tensor } from '@lowrank/core';
import { Module, TransformerLM, gptTiny, llamaTiny } from '@lowrank/nn';
import {
  ADAPTER_FILE, LoraLinear, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, PeftModel, getPeftModel, loadAdapter, loadPeftAdapter,
} from '@lowrank/lora';
import '@lowrank/lora/node';
import { build, kindsOf, output, sameValues, specArb, targetsArb, type Spec } from './helpers.ts';

const root = mkdtempSync(path.join(tmpdir(), 'lowrank-lora-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;
const freshDir = (): string => path.join(root, `a${dirCount++}`);

const caseArb = specArb
  .filter((s) => s.kind === 'mlp' || s.nLayer <= 2)
  .chain((spec) => fc.record({ spec: fc.constant(spec), targets: targetsArb(kindsOf(spec)), r: fc.integer({ min: 1, max: 3 }), alpha: fc.integer({ min: 1, max: 16 }) }));

function loraValues(peft: PeftModel): Map<string, Float32Array> {
  return new Map(peft.namedParameters().filter(([n]) => n.includes('lora_')).map(([n, p]) => [n, Float32Array.from(p.dataSync())]));
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** A model identical to the spec's base model (same seed). */
const twin = (s: Spec): Module => build(s).model;

describe('adapter files', () => {
  test('6. save -> load is bit-exact in both formats; the native file is <= 4 B x trainable + 4 KiB', async () => {
    await fc.assert(fc.asyncProperty(caseArb, fc.boolean(), async (c, rs) => {
      const b = build(c.spec);
      const peft = getPeftModel(b.model, { r: c.r, loraAlpha: c.alpha, targetModules: c.targets, initLoraWeights: false, useRslora: rs });
      const want = loraValues(peft);
      const out = output(b, peft);
      const { trainable } = peft.getNbTrainableParameters();
      const native = freshDir();
      const file = await peft.saveAdapter(native);
      assert.equal(path.basename(file), ADAPTER_FILE);
      assert.ok(statSync(file).size <= 4 * trainable + 4096, `native file ${statSync(file).size} B for ${trainable} params`);
      const pdir = freshDir();
      await peft.savePretrained(pdir);
      for (const [label, loaded] of [
        ['native', await loadAdapter(twin(c.spec), native)],
        ['peft', await loadPeftAdapter(twin(c.spec), pdir)],
      ] as const) {
        const got = loraValues(loaded);
        assert.deepEqual([...got.keys()], [...want.keys()], `${label}: keys`);
        for (const [k, v] of want) assert.ok(bitsEqual(got.get(k)!, v), `${label}: ${k} differs`);
        assert.ok(sameValues(output(b, loaded), out), `${label}: outputs differ`);
        const cfg = loaded.peftConfig.default;
        assert.equal(cfg.useRslora, rs);
        assert.equal(cfg.loraAlpha, c.alpha);
      }
    }), { numRuns: 10 });
  });

  test('PEFT files: snake_case config keys and base_model.model.* tensor keys without the adapter name', async () => {
    const b = build({ kind: 'llama', nEmbd: 8, nHead: 2, nLayer: 1, inter: 20, vocab: 11, batch: 1, seq: 3, seed: 3 });
    const peft = getPeftModel(b.model, { r: 2, loraAlpha: 4, targetModules: ['q_proj', 'v_proj'] });
    const dir = freshDir();
    await peft.savePretrained(dir);
    const cfg = JSON.parse(readFileSync(path.join(dir, PEFT_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.task_type, 'CAUSAL_LM');
    assert.equal(cfg.r, 2);
    assert.equal(cfg.lora_alpha, 4);
    assert.deepEqual(cfg.target_modules, ['q_proj', 'v_proj']);
    assert.equal(cfg.fan_in_fan_out, false);
    assert.equal(cfg.inference_mode, true);
    for (const k of ['lora_dropout', 'bias', 'use_rslora', 'init_lora_weights', 'modules_to_save', 'rank_pattern', 'alpha_pattern', 'base_model_name_or_path']) {
      assert.ok(k in cfg, `missing ${k}`);
    }
    assert.deepEqual(Object.keys(cfg), Object.keys(cfg).sort());
    const { tensors, metadata } = decodeSafetensors(readFileSync(path.join(dir, PEFT_WEIGHTS_FILE)));
    assert.deepEqual(metadata, { format: 'pt' });
    assert.deepEqual([...tensors.keys()].sort(), [
      'base_model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.layers.0.self_attn.v_proj.lora_A.weight', 'base_model.model.layers.0.self_attn.v_proj.lora_B.weight',
    ]);
    assert.deepEqual(tensors.get('base_model.model.layers.0.self_attn.q_proj.lora_A.weight')!.shape, [2, 8]);
    assert.deepEqual(tensors.get('base_model.model.layers.0.self_attn.q_proj.lora_B.weight')!.shape, [8, 2]);
  });

  test('unknown config keys are ignored with a warning', async () => {
    const b = build({ kind: 'gpt', nEmbd: 8, nHead: 2, nLayer: 1, inter: 20, vocab: 11, batch: 1, seq: 3, seed: 4 });
    const dir = freshDir();
    await getPeftModel(b.model, { r: 2, targetModules: ['q_proj'] }).savePretrained(dir);
    const p = path.join(dir, PEFT_CONFIG_FILE);
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), shiny_new_option: 3 }));
    const warnings: string[] = [];
    const loaded = await loadPeftAdapter(twin({ kind: 'gpt', nEmbd: 8, nHead: 2, nLayer: 1, inter: 20, vocab: 11, batch: 1, seq: 3, seed: 4 }), dir, undefined, { onWarning: (m) => warnings.push(m) });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /shiny_new_option/);
    assert.equal(loaded.peftConfig.default.r, 2);
  });

  test('a tensor key that maps onto nothing is an error naming it, and the model is left unchanged', async () => {
    const spec: Spec = { kind: 'llama', nEmbd: 8, nHead: 2, nLayer: 1, inter: 20, vocab: 11, batch: 1, seq: 3, seed: 5 };
    const src = build(spec);
    const dir = freshDir();
    await getPeftModel(src.model, { r: 2, targetModules: ['q_proj'], initLoraWeights: false }).savePretrained(dir);
    const wfile = path.join(dir, PEFT_WEIGHTS_FILE);
    const { tensors } = decodeSafetensors(readFileSync(wfile));
    const extra: RawTensor = { dtype: 'float32', shape: [2, 8], data: new Float32Array(16) };
    writeFileSync(wfile, encodeSafetensors(new Map([...tensors, ['base_model.model.layers.0.self_attn.x_proj.lora_A.weight', extra]]), { format: 'pt' }));

    const target = build(spec);
    const keysBefore = Object.keys(target.model.stateDict());
    const flags = target.model.parameters().map((p) => p.requiresGrad);
    const outBefore = output(target);
    await assert.rejects(loadPeftAdapter(target.model, dir), /x_proj\.lora_A\.weight/);
    assert.deepEqual(Object.keys(target.model.stateDict()), keysBefore);
    assert.deepEqual(target.model.parameters().map((p) => p.requiresGrad), flags);
    assert.ok(sameValues(output(target), outBefore));

    // the same against a PeftModel: the failed adapter leaves no trace
    const peft = getPeftModel(target.model, { r: 1, targetModules: ['v_proj'], initLoraWeights: false });
    const peftKeys = Object.keys(peft.stateDict());
    const peftOut = output(target, peft);
    await assert.rejects(peft.loadPeftAdapter(dir, { adapterName: 'other' }), /x_proj/);
    assert.deepEqual(Object.keys(peft.stateDict()), peftKeys);
    assert.deepEqual(Object.keys(peft.peftConfig), ['default']);
    assert.ok(sameValues(output(target, peft), peftOut));
    assert.ok(peft.getSubmodule('base_model.model.layers.0.self_attn.v_proj') instanceof LoraLinear);
    assert.ok(!(peft.getSubmodule('base_model.model.layers.0.self_attn.q_proj') instanceof LoraLinear));
  });

  test('a mis-shaped or missing tensor is an error; loading a second adapter into a PeftModel works', async () => {
    const spec: Spec = { kind: 'gpt', nEmbd: 8, nHead: 1, nLayer: 1, inter: 20, vocab: 11, batch: 1, seq: 3, seed: 6 };
    const src = build(spec);
    const srcPeft = getPeftModel(src.model, { r: 2, targetModules: ['q_proj', 'o_proj'], initLoraWeights: false });
    const good = freshDir();
    await srcPeft.savePretrained(good);
    const bad = freshDir();
    cpSync(good, bad, { recursive: true });
    const wfile = path.join(bad, PEFT_WEIGHTS_FILE);
    const { tensors } = decodeSafetensors(readFileSync(wfile));
    const key = 'base_model.model.layers.0.self_attn.o_proj.lora_B.weight';
    tensors.delete(key);
    writeFileSync(wfile, encodeSafetensors(tensors, { format: 'pt' }));
    await assert.rejects(loadPeftAdapter(build(spec).model, bad), /missing tensor 'layers\.0\.self_attn\.o_proj\.lora_B\.weight'/);

    const tgt = build(spec);
    const peft = getPeftModel(tgt.model, { r: 3, targetModules: ['q_proj'] }, 'first');
    await peft.loadPeftAdapter(good, { adapterName: 'second' });
    peft.setAdapter('second');
    assert.ok(sameValues(output(tgt, peft), output(src, srcPeft)));
  });

  test('modulesToSave: a trainable copy is kept and saved under the module path', async () => {
    const spec: Spec = { kind: 'gpt', nEmbd: 8, nHead: 2, nLayer: 1, inter: 20, vocab: 11, batch: 1, seq: 3, seed: 7 };
    const b = build(spec);
    const head = b.model.getSubmodule('lm_head');
    const peft = getPeftModel(b.model, { r: 2, targetModules: ['q_proj'], modulesToSave: ['lm_head'] });
    const names = peft.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n);
    assert.ok(names.includes('base_model.model.lm_head.modules_to_save.default.weight'));
    assert.ok(!names.includes('base_model.model.lm_head.original_module.weight'));
    const dir = freshDir();
    await peft.savePretrained(dir);
    const { tensors } = decodeSafetensors(readFileSync(path.join(dir, PEFT_WEIGHTS_FILE)));
    assert.ok(tensors.has('base_model.model.lm_head.weight'));
    const copy = peft.getBaseModel().getParameter('lm_head.modules_to_save.default.weight');
    copy.assign(copy.mul(2));
    const out = output(b, peft);
    const dir2 = freshDir();
    await peft.savePretrained(dir2);
    const loaded = await loadPeftAdapter(twin(spec), dir2);
    assert.ok(sameValues(output(b, loaded), out), 'the saved lm_head copy is loaded back');
    assert.ok(!sameValues(loaded.disableAdapter(() => output(b, loaded)), out), 'disabled uses the original head');
    const plain = peft.unload();
    assert.notEqual(plain.getSubmodule('lm_head'), head, 'unload keeps the trained copy, as PEFT');
  });
});

describe("PEFT files in transformers' LlamaForCausalLM layout", () => {
  const ids = (): Tensor => tensor([[1, 5, 2, 7, 3, 0, 4, 6]], { dtype: 'int32' });

  test("layout 'transformers' nests the decoder under model. and loads back bit-exactly", async () => {
    manualSeed(11);
    const peft = getPeftModel(new TransformerLM(llamaTiny()), { r: 2, loraAlpha: 4, targetModules: 'all-linear', initLoraWeights: false });
    const want = peft.forward(ids()).logits.dataSync();
    const dir = freshDir();
    await peft.savePretrained(dir, { layout: 'transformers' });
    const keys = [...decodeSafetensors(readFileSync(path.join(dir, PEFT_WEIGHTS_FILE))).tensors.keys()];
    assert.ok(keys.length > 0 && keys.every((k) => k.startsWith('base_model.model.model.layers.')), keys.join(', '));
    manualSeed(11);
    const loaded = await loadPeftAdapter(new TransformerLM(llamaTiny()), dir);
    const got = loaded.forward(ids()).logits.dataSync();
    assert.ok(bitsEqual(Float32Array.from(got), Float32Array.from(want)));
  });

  test("layout 'transformers' is refused for the gpt flavour, naming why", async () => {
    const peft = getPeftModel(new TransformerLM(gptTiny()), { r: 2, targetModules: ['q_proj'] });
    await assert.rejects(peft.savePretrained(freshDir(), { layout: 'transformers' }), /llama-flavour.*c_attn/);
  });
});
