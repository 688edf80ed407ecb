/**
 * Every Hugging Face fixture under fixtures/hf (sizes read from its config.json):
 * logits and loss against transformers' reference, greedy tokens with and
 * without the KV cache, the PEFT adapter (logits, loss, greedy, merged
 * weight), and bit-exact save -> load round trips of model and adapter.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { noGrad, tensor } from '@lowrank/core';
import { AutoModelForCausalLM, type PreTrainedModel } from '@lowrank/nn';
import '@lowrank/nn/node';
import { PeftModel, getPeftModel } from '@lowrank/lora';
import { assertClose, assertSameState, bitsEqual, hfFixtures } from './helpers.ts';

const fixtures = hfFixtures();
const root = mkdtempSync(path.join(tmpdir(), 'lowrank-hf-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('fixtures/hf holds model directories', () => {
  assert.ok(fixtures.length >= 1, 'no fixtures/hf/<name>/config.json + expected.json found');
});

function idsOf(e: { shape: number[]; data: number[] }) {
  return tensor(e.data, { shape: e.shape, dtype: 'int32' });
}

function greedy(model: PreTrainedModel | PeftModel<PreTrainedModel>, prompt: number[], n: number, useCache: boolean): number[] {
  const base = model instanceof PeftModel ? model.getBaseModel() : model;
  return Array.from(base.generate([prompt], { maxNewTokens: n, eosTokenId: null, useCache }).dataSync().slice(prompt.length));
}

for (const fx of fixtures) {
  describe(`hf fixture ${fx.name}`, () => {
    const e = fx.expected;

    test('logits and loss match transformers (atol 1e-4, rtol 1e-4)', async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      assert.equal(model.config.modelType, fx.config.model_type);
      const ids = idsOf(e.inputIds);
      const { logits, loss } = noGrad(() => model.forward(ids, { labels: ids }));
      assert.deepEqual(logits.shape, e.logits.shape);
      const errLogits = assertClose(logits.dataSync(), e.logits.data, `${fx.name} logits`);
      const errLoss = assertClose([loss!.item()], [e.loss], `${fx.name} loss`);
      console.log(`hf ${fx.name} max abs error vs transformers: logits ${errLogits.toExponential(2)}, loss ${errLoss.toExponential(2)}`);
    });

    test('greedy tokens are exact, with and without the KV cache', async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      const n = e.greedy.tokens.length;
      assert.deepEqual(greedy(model, e.greedy.prompt, n, true), e.greedy.tokens);
      assert.deepEqual(greedy(model, e.greedy.prompt, n, false), e.greedy.tokens);
    });

    test('savePretrained -> fromPretrained is bit-exact (directory and in-memory)', async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      const dir = path.join(root, `${fx.name}-saved`);
      await model.savePretrained(dir);
      assertSameState(model, await AutoModelForCausalLM.fromPretrained(dir), `${fx.name} directory round trip`);
      const files = new Map<string, Uint8Array>();
      await model.savePretrained(files, { maxShardSize: 4096 });
      assert.ok(files.has('model.safetensors.index.json'), 'a small maxShardSize writes shards and an index');
      const back = await AutoModelForCausalLM.fromPretrained(files);
      assertSameState(model, back, `${fx.name} sharded in-memory round trip`);
      assert.deepEqual(back.config.raw.model_type, fx.config.model_type);
    });

    if (!e.lora || !fx.adapterDir) return;
    const lora = e.lora;
    const adapterDir = fx.adapterDir;

    test('the PEFT adapter: logits, loss and greedy tokens with and without cache', async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      const peft = await PeftModel.fromPretrained(model, adapterDir);
      const ids = idsOf(e.inputIds);
      const { logits, loss } = noGrad(() => peft.forward(ids, { labels: ids }));
      const errLogits = assertClose(logits.dataSync(), lora.logits.data, `${fx.name} + adapter logits`);
      const errLoss = assertClose([loss!.item()], [lora.loss], `${fx.name} + adapter loss`);
      console.log(`hf ${fx.name} + PEFT adapter max abs error: logits ${errLogits.toExponential(2)}, loss ${errLoss.toExponential(2)}`);
      const n = lora.greedy.tokens.length;
      assert.deepEqual(greedy(peft, e.greedy.prompt, n, true), lora.greedy.tokens);
      assert.deepEqual(greedy(peft, e.greedy.prompt, n, false), lora.greedy.tokens);
    });

    test('mergeAndUnload: the merged weight matches, and the merged checkpoint reloads to the adapted logits', async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      const peft = await PeftModel.fromPretrained(model, adapterDir);
      const merged = peft.mergeAndUnload();
      const errMerged = assertClose(merged.getParameter(lora.merged.key).dataSync(), lora.merged.value.data, `${fx.name} merged ${lora.merged.key}`);
      console.log(`hf ${fx.name} merged ${lora.merged.key} max abs error: ${errMerged.toExponential(2)}`);
      const dir = path.join(root, `${fx.name}-merged`);
      await merged.savePretrained(dir);
      const reloaded = await AutoModelForCausalLM.fromPretrained(dir);
      const ids = idsOf(e.inputIds);
      const { logits } = noGrad(() => reloaded.forward(ids));
      assertClose(logits.dataSync(), lora.logits.data, `${fx.name} merged checkpoint logits`);
    });

    test('PEFT adapter save -> load is bit-exact, with transformers module names', async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      const peft = await PeftModel.fromPretrained(model, adapterDir, { isTrainable: true });
      const out = path.join(root, `${fx.name}-adapter`);
      await peft.savePretrained(out);
      const again = await PeftModel.fromPretrained(await AutoModelForCausalLM.fromPretrained(fx.dir), out);
      const a = new Map(peft.namedParameters().filter(([n]) => n.includes('lora_')));
      const b = new Map(again.namedParameters().filter(([n]) => n.includes('lora_')));
      assert.deepEqual([...a.keys()], [...b.keys()]);
      assert.ok(a.size > 0);
      for (const [k, t] of a) assert.ok(bitsEqual(Float32Array.from(t.dataSync()), Float32Array.from(b.get(k)!.dataSync())), `${k} differs`);
      // The in-memory keys are transformers' module paths, unrenamed.
      const prefix = model.baseModelPrefix;
      for (const k of a.keys()) assert.ok(k.startsWith(`base_model.model.${prefix}.`), k);
      assert.equal(again.peftConfig.default.fanInFanOut, peft.peftConfig.default.fanInFanOut);
    });

    test('getPeftModel targets transformers module names with no renaming', async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      const target = model.config.modelType === 'gpt2' ? 'c_attn' : 'q_proj';
      const peft = getPeftModel(model, { r: 2, targetModules: [target] });
      const names = peft.baseModel.loraLayers().map(([n]) => n);
      assert.equal(names.length, model.config.numHiddenLayers);
      assert.ok(names.every((n) => n.endsWith(`.${target}`)));
      assert.equal(peft.peftConfig.default.fanInFanOut, model.config.modelType === 'gpt2');
    });
  });
}
