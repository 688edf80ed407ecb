// Issue 15 defect 3 (and 4's r check): a failed adapter load or injection leaves the model exactly as it was.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeSafetensors, encodeSafetensors, manualSeed, memory, resetPeak, type RawTensor } from '@lowrank/core';
import { TransformerLM, gptTiny, type Module } from '@lowrank/nn';
import { PeftModel, adapterToFiles, getPeftModel, loadAdapterInto, type AdapterFiles } from '@lowrank/lora';

/** Everything a failed load must not change: module tree, parameters and flags, adapters, live tensors. */
function snapshot(m: Module): string {
  const adapters = m instanceof PeftModel ? { configs: Object.keys(m.peftConfig), active: m.activeAdapters } : null;
  return JSON.stringify({
    modules: m.namedModules().map(([n, x]) => `${n}:${x.constructor.name}`),
    params: m.namedParameters().map(([n, p]) => [n, p.requiresGrad, Array.from(p.dataSync())]),
    adapters,
    live: memory().liveTensors,
    bytes: memory().liveBytes,
  });
}

function model(seed = 1): TransformerLM {
  manualSeed(seed);
  return new TransformerLM(gptTiny());
}

function savedPeftFiles(): AdapterFiles {
  const peft = getPeftModel(model(2), { r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'], initLoraWeights: false });
  return adapterToFiles(peft, 'peft');
}

const enc = (o: unknown): Uint8Array<ArrayBuffer> => new TextEncoder().encode(JSON.stringify(o));
const jsonOf = (files: AdapterFiles): Record<string, unknown> => JSON.parse(new TextDecoder().decode(files['adapter_config.json'])) as Record<string, unknown>;

/** Ways to break a valid PEFT adapter, each a clear failure that must change nothing. */
const breakers: Record<string, (f: AdapterFiles) => AdapterFiles> = {
  modulesToSaveDropout: (f) => ({ ...f, 'adapter_config.json': enc({ ...jsonOf(f), modules_to_save: ['drop'] }) }),
  modulesToSaveGelu: (f) => ({ ...f, 'adapter_config.json': enc({ ...jsonOf(f), modules_to_save: ['act'] }) }),
  hugeRankPattern: (f) => ({ ...f, 'adapter_config.json': enc({ ...jsonOf(f), rank_pattern: { v_proj: 1e9 } }) }),
  hugeR: (f) => ({ ...f, 'adapter_config.json': enc({ ...jsonOf(f), r: 1e6 }) }),
  otherR: (f) => ({ ...f, 'adapter_config.json': enc({ ...jsonOf(f), r: 3 }) }),
  noTarget: (f) => ({ ...f, 'adapter_config.json': enc({ ...jsonOf(f), target_modules: ['nothing_here'] }) }),
  nanAlpha: (f) => ({ ...f, 'adapter_config.json': new TextEncoder().encode(new TextDecoder().decode(f['adapter_config.json']).replace(/"lora_alpha": \d+/, '"lora_alpha": NaN')) }),
  truncatedJson: (f) => ({ ...f, 'adapter_config.json': f['adapter_config.json'].slice(0, 7) }),
  missingTensor: (f) => withTensors(f, (t) => t.delete([...t.keys()][0])),
  extraTensor: (f) => withTensors(f, (t) => t.set('base_model.model.layers.0.mlp.gate_proj.lora_A.weight', t.values().next().value!)),
  wrongShape: (f) => withTensors(f, (t) => {
    const [k, v] = [...t][1];
    t.set(k, { ...v, shape: [v.shape[1], v.shape[0]] });
  }),
  lastBiasOnly: (f) => ({ ...withTensors(f, (t) => t.set('base_model.model.norm.bias', { dtype: 'float32', shape: [3], data: new Float32Array([1, 2, 3]) })), 'adapter_config.json': enc({ ...jsonOf(f), bias: 'all' }) }),
};

function withTensors(f: AdapterFiles, edit: (t: Map<string, RawTensor>) => void): AdapterFiles {
  const { tensors } = decodeSafetensors(f['adapter_model.safetensors']);
  edit(tensors);
  return { ...f, 'adapter_model.safetensors': encodeSafetensors(tensors, { format: 'pt' }) as Uint8Array<ArrayBuffer> };
}

describe('a failed adapter load changes nothing', () => {
  const files = savedPeftFiles();
  for (const [name, breakIt] of Object.entries(breakers)) {
    test(`${name}: onto a plain model and onto a PeftModel with an adapter`, async () => {
      const bad = breakIt(files);
      const plain = model();
      const before = snapshot(plain);
      resetPeak();
      const err = await loadAdapterInto(plain, bad, 'peft', { onWarning: () => undefined }).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof Error && !(err instanceof TypeError) && !(err instanceof RangeError), `${name}: ${String(err)}`);
      assert.match(err.message, /adapter_config\.json|adapter_model\.safetensors|getPeftModel|loading adapter/, `${name}: error names no file or field: ${err.message}`);
      assert.equal(snapshot(plain), before, `${name}: the plain model changed`);
      // r is checked against the model before allocating: no failed load allocates more than the model holds.
      assert.ok(memory().peakBytes - memory().liveBytes < 1 << 20, `${name}: peak ${memory().peakBytes} vs live ${memory().liveBytes}`);

      const peft = getPeftModel(model(), { r: 2, targetModules: ['q_proj'], modulesToSave: ['lm_head'] });
      const beforePeft = snapshot(peft);
      await assert.rejects(loadAdapterInto(peft, bad, 'peft', { adapterName: 'other', onWarning: () => undefined }));
      assert.equal(snapshot(peft), beforePeft, `${name}: the PeftModel changed`);
    });
  }

  test('property: any sequence of failing loads and injections leaves the state dict, flags and adapters as they were', async () => {
    const peft = getPeftModel(model(), { r: 2, targetModules: ['q_proj'] });
    const names = Object.keys(breakers);
    await fc.assert(fc.asyncProperty(fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: 4 }), async (seq) => {
      const before = snapshot(peft);
      for (const b of seq) {
        await assert.rejects(loadAdapterInto(peft, breakers[b](files), 'peft', { adapterName: 'x', onWarning: () => undefined }));
      }
      assert.throws(() => peft.addAdapter('y', { targetModules: ['v_proj'], modulesToSave: ['drop'] }));
      assert.equal(snapshot(peft), before);
    }), { numRuns: 15 });
  });
});

describe('injection errors', () => {
  test('modulesToSave naming a Dropout or GELU fails before any layer is wrapped (getPeftModel and addAdapter)', () => {
    const m = model();
    const before = snapshot(m);
    assert.throws(() => getPeftModel(m, { targetModules: ['q_proj', 'v_proj'], modulesToSave: ['drop'] }), /modulesToSave 'drop' is a Dropout/);
    assert.throws(() => getPeftModel(m, { targetModules: ['q_proj'], modulesToSave: ['act'] }), /modulesToSave 'layers.0.mlp.act' is a GELU/);
    assert.equal(snapshot(m), before);
    const peft = getPeftModel(m, { targetModules: ['q_proj'] });
    const beforePeft = snapshot(peft);
    assert.throws(() => peft.addAdapter('b', { targetModules: ['v_proj'], modulesToSave: ['drop'] }), /is a Dropout/);
    assert.equal(snapshot(peft), beforePeft);
  });
  test('rank_pattern {v_proj: 1e9} is an error naming the field, not a RangeError', () => {
    const m = model();
    const before = snapshot(m);
    assert.throws(() => getPeftModel(m, { targetModules: ['q_proj', 'v_proj'], rankPattern: { v_proj: 1e9 } }),
      /getPeftModel: rankPattern\['v_proj'\] = 1000000000 for 'layers.0.self_attn.v_proj' would give a 1000000000 x 16 adapter matrix/);
    assert.equal(snapshot(m), before);
  });
  test('getPeftModel on a model already holding LoRA layers is an error (it re-initialised B before)', () => {
    const m = model();
    getPeftModel(m, { targetModules: ['q_proj'] });
    assert.throws(() => getPeftModel(m, { targetModules: ['q_proj'] }), /already holds LoRA layers \(at 'layers.0.self_attn.q_proj'\)/);
  });
  test('deleteAdapter frees the adapter tensors', () => {
    const peft = getPeftModel(model(), { targetModules: ['q_proj'] });
    const live = memory().liveTensors;
    peft.addAdapter('b', { targetModules: ['v_proj'], modulesToSave: ['lm_head'] });
    peft.deleteAdapter('b');
    assert.equal(memory().liveTensors, live);
  });
});
