/**
 * Checkpoints written here in the Hub layout with sizes no fixture has:
 * sharded, unprefixed GPT-2 keys with mask buffers, explicit head_dim, other
 * GQA ratios, BF16 / F16 storage, BF16 adapters. Logits are checked against a
 * plain float64 reference (itself checked on the fixtures first), the KV
 * cache against full recompute, and a LoRA step on each architecture by
 * gradcheck.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { gradcheck, manualSeed, noGrad, tensor, type Tensor } from '@lowrank/core';
import { AdamW, AutoModelForCausalLM, KVCache, parameterCount, type PreTrainedModel } from '@lowrank/nn';
import '@lowrank/nn/node';
import { PeftModel, estimateMemory, getPeftModel, LoraLinear } from '@lowrank/lora';
import {
  assertClose, assertSameState, hfFixtures, stateValues, storedValues, utf8, writeSafetensors, type StoredTensor,
} from './helpers.ts';
import { gpt2Reference, llamaReference } from './reference.ts';

function reference(model: PreTrainedModel, ids: number[]): Float64Array[] {
  const sd = stateValues(model);
  const raw = model.config.raw as Record<string, unknown>;
  return model.config.modelType === 'gpt2' ? gpt2Reference(sd, raw as Record<string, number>, ids) : llamaReference(sd, raw, ids);
}

function logitsOf(model: PreTrainedModel, rows: number[][]): Float32Array {
  const ids = tensor(rows, { dtype: 'int32' });
  return Float32Array.from(noGrad(() => model.forward(ids)).logits.dataSync());
}

function checkAgainstReference(model: PreTrainedModel, rows: number[][], what: string): void {
  const got = logitsOf(model, rows);
  const want = rows.flatMap((r) => reference(model, r).flatMap((row) => [...row]));
  assertClose(got, want, what);
  assert.ok(want.some((v) => Math.abs(v) > 0.5), `${what}: the reference logits are not trivially small`);
}

function randomRows(B: number, T: number, vocab: number, seed: number): number[][] {
  let s = seed;
  const next = (): number => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s;
  };
  return Array.from({ length: B }, () => Array.from({ length: T }, () => next() % vocab));
}

const GPT2_CONFIG = {
  model_type: 'gpt2', vocab_size: 50, n_embd: 24, n_head: 3, n_layer: 3, n_positions: 20, n_inner: 40,
  layer_norm_epsilon: 1e-5, activation_function: 'gelu_new', initializer_range: 0.3, tie_word_embeddings: true,
};
const LLAMA_CONFIG = {
  model_type: 'llama', vocab_size: 40, hidden_size: 32, num_attention_heads: 6, num_key_value_heads: 2, head_dim: 10,
  intermediate_size: 48, num_hidden_layers: 2, max_position_embeddings: 24, rms_norm_eps: 1e-6, rope_theta: 500,
  initializer_range: 0.3, tie_word_embeddings: false,
};
const QWEN2_CONFIG = {
  model_type: 'qwen2', vocab_size: 36, hidden_size: 24, num_attention_heads: 4, num_key_value_heads: 1,
  intermediate_size: 40, num_hidden_layers: 2, max_position_embeddings: 32, rms_norm_eps: 1e-6, rope_theta: 1e6,
  initializer_range: 0.3, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 8,
};

/** Random model of a config (seeded), with biases and norms randomised too so every parameter matters. */
function randomModel(cfg: object, seed: number): PreTrainedModel {
  manualSeed(seed);
  const model = AutoModelForCausalLM.fromConfig(cfg);
  noGrad(() => {
    for (const [k, p] of model.namedParameters()) {
      if (k.endsWith('bias') || k.includes('norm') || k.includes('ln_')) {
        const v = Float32Array.from(p.dataSync(), (x, i) => x + 0.2 * Math.sin(i + k.length));
        p.assign(tensor(v, { shape: [...p.shape] }));
      }
    }
  });
  return model.eval();
}

describe('the float64 reference', () => {
  for (const fx of hfFixtures()) {
    test(`reproduces fixture ${fx.name}`, async () => {
      const model = await AutoModelForCausalLM.fromPretrained(fx.dir);
      const [B, T] = fx.expected.inputIds.shape;
      const rows = Array.from({ length: B }, (_, b) => fx.expected.inputIds.data.slice(b * T, (b + 1) * T));
      const want = rows.flatMap((r) => reference(model, r).flatMap((row) => [...row]));
      assertClose(want, fx.expected.logits.data, `reference on ${fx.name}`);
    });
  }
});

describe('checkpoints of other sizes in the Hub layout', () => {
  test('GPT-2 with unprefixed keys and attn.bias / attn.masked_bias buffers (as the original gpt2 file)', async () => {
    const src = randomModel(GPT2_CONFIG, 1);
    const tensors: Record<string, StoredTensor> = {};
    for (const [k, v] of stateValues(src)) {
      if (k === 'lm_head.weight') continue;
      tensors[k.replace(/^transformer\./, '')] = { shape: [...src.getParameter(k).shape], data: v };
    }
    const P = GPT2_CONFIG.n_positions;
    const mask = new Uint8Array(P * P * 4);
    const extra: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }> = {};
    for (let l = 0; l < GPT2_CONFIG.n_layer; l++) {
      extra[`h.${l}.attn.bias`] = { dtype: 'F32', shape: [1, 1, P, P], bytes: mask };
      extra[`h.${l}.attn.masked_bias`] = { dtype: 'F32', shape: [], bytes: new Uint8Array(4) };
    }
    const files = { 'config.json': utf8(GPT2_CONFIG), 'model.safetensors': writeSafetensors(tensors, extra) };
    const model = await AutoModelForCausalLM.fromPretrained(files);
    assertSameState(src, model, 'unprefixed GPT-2');
    assert.equal(model.getParameter('lm_head.weight'), model.getParameter('transformer.wte.weight'), 'lm_head stays tied');
    checkAgainstReference(model, randomRows(2, 9, GPT2_CONFIG.vocab_size, 3), 'GPT-2 24x3 logits');
  });

  test('LLaMA with explicit head_dim (6 heads x 10 != 32) and 3:1 GQA, stored BF16 and sharded', async () => {
    const src = randomModel(LLAMA_CONFIG, 2);
    const names = [...stateValues(src).keys()];
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const files: Record<string, Uint8Array> = { 'config.json': utf8(LLAMA_CONFIG) };
    const weightMap: Record<string, string> = {};
    const want = new Map<string, Float32Array>();
    shards.forEach((keys, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      const t: Record<string, StoredTensor> = {};
      for (const k of keys) {
        t[k] = { shape: [...src.getParameter(k).shape], data: Float32Array.from(src.getParameter(k).dataSync()), dtype: 'BF16' };
        want.set(k, storedValues(t[k]));
        weightMap[k] = file;
      }
      files[file] = writeSafetensors(t);
    });
    files['model.safetensors.index.json'] = utf8({ metadata: { total_size: 0 }, weight_map: weightMap });
    const model = await AutoModelForCausalLM.fromPretrained(files);
    assert.deepEqual(model.getParameter('model.layers.0.self_attn.q_proj.weight').shape, [60, 32]);
    assert.deepEqual(model.getParameter('model.layers.0.self_attn.k_proj.weight').shape, [20, 32]);
    for (const [k, v] of want) assert.deepEqual(Float32Array.from(model.getParameter(k).dataSync()), v, `${k} holds the bf16 values`);
    checkAgainstReference(model, randomRows(2, 11, LLAMA_CONFIG.vocab_size, 5), 'LLaMA head_dim 10 logits');
  });

  test('Qwen2 with 4:1 GQA, q/k/v biases and tied embeddings, stored F16', async () => {
    const src = randomModel(QWEN2_CONFIG, 3);
    const t: Record<string, StoredTensor> = {};
    for (const [k, v] of stateValues(src)) if (k !== 'lm_head.weight') t[k] = { shape: [...src.getParameter(k).shape], data: v, dtype: 'F16' };
    assert.ok(t['model.layers.0.self_attn.q_proj.bias'] && !t['model.layers.0.self_attn.o_proj.bias']);
    const model = await AutoModelForCausalLM.fromPretrained({ 'config.json': utf8(QWEN2_CONFIG), 'model.safetensors': writeSafetensors(t) });
    for (const [k, s] of Object.entries(t)) assert.deepEqual(Float32Array.from(model.getParameter(k).dataSync()), storedValues(s), k);
    checkAgainstReference(model, randomRows(1, 14, QWEN2_CONFIG.vocab_size, 7), 'Qwen2 logits');
  });

  test('savePretrained shards above maxShardSize, the index lists every key, and the reload is bit-exact', async () => {
    for (const cfg of [GPT2_CONFIG, LLAMA_CONFIG, QWEN2_CONFIG]) {
      const model = randomModel(cfg, 4);
      const files = new Map<string, Uint8Array>();
      const written = await model.savePretrained(files, { maxShardSize: 8000 });
      const index = JSON.parse(new TextDecoder().decode(files.get('model.safetensors.index.json')!)) as { weight_map: Record<string, string> };
      const shardNames = new Set(Object.values(index.weight_map));
      assert.ok(shardNames.size > 1, `${cfg.model_type}: several shards`);
      for (const s of shardNames) assert.ok(written.includes(s) && files.has(s));
      assert.ok(!files.has('model.safetensors'));
      const expectedKeys = Object.keys(model.stateDict()).filter((k) => !model.tiedKeys().includes(k)).sort();
      assert.deepEqual(Object.keys(index.weight_map).sort(), expectedKeys);
      assertSameState(model, await AutoModelForCausalLM.fromPretrained(files), `${cfg.model_type} sharded`);
      // A second, unsharded save into the same map drops the stale shards and index.
      await model.savePretrained(files);
      assert.ok(files.has('model.safetensors') && !files.has('model.safetensors.index.json'));
      assert.ok(![...files.keys()].some((k) => /^model-\d+-of-\d+/.test(k)));
    }
  });
});

describe('KV cache and generate', () => {
  for (const cfg of [GPT2_CONFIG, LLAMA_CONFIG, QWEN2_CONFIG]) {
    test(`${cfg.model_type}: token-by-token logits with the cache equal the full forward`, () => {
      const model = randomModel(cfg, 5);
      const rows = randomRows(2, 10, cfg.vocab_size, 11);
      const full = logitsOf(model, rows);
      const cache = new KVCache(model.numLayers);
      const V = cfg.vocab_size;
      const got = new Float32Array(full.length);
      for (let t = 0; t < 10; t++) {
        const step = noGrad(() => model.forward(tensor(rows.map((r) => [r[t]]), { dtype: 'int32' }), { kvCache: cache })).logits.dataSync();
        for (let b = 0; b < 2; b++) got.set(step.subarray(b * V, (b + 1) * V), (b * 10 + t) * V);
      }
      cache.dispose();
      assertClose(got, full, `${cfg.model_type} cached logits`, 1e-5, 1e-5);
      const prompt = rows.map((r) => r.slice(0, 3));
      const a = model.generate(prompt, { maxNewTokens: 6, eosTokenId: null });
      const b = model.generate(prompt, { maxNewTokens: 6, eosTokenId: null, useCache: false });
      assert.deepEqual(a.toArray(), b.toArray());
    });
  }

  test('unknown option names suggest the camelCase one', () => {
    const model = randomModel(LLAMA_CONFIG, 6);
    const bad = (opts: object, re: RegExp): void => {
      assert.throws(() => model.generate([1, 2], opts as never), re);
    };
    bad({ maxNewTokens: 2, top_p: 0.9 }, /unknown option 'top_p' \(did you mean 'topP'\?\)/);
    bad({ maxNewTokens: 2, do_sample: true }, /'do_sample' \(did you mean 'doSample'\?\)/);
    bad({ max_new_tokens: 2 }, /'max_new_tokens' \(did you mean 'maxNewTokens'\?\)/);
    bad({ maxNewTokens: 2, repetition_penalty: 1.2 }, /did you mean 'repetitionPenalty'/);
    bad({ maxNewTokens: 2, temperature: 0.7 }, /pass doSample: true/);
    bad({ maxNewTokens: 2, doSample: true, topP: 1.5 }, /topP must be in \(0, 1\]/);
    bad({ maxNewTokens: 30 }, /exceed the model's 24 positions/);
    assert.throws(() => model.generate([1, 99], { maxNewTokens: 1 }), /token id 99 is outside the vocabulary/);
  });

  test('sampling: seeded and reproducible; topK 1 and a tiny topP are greedy; eos ids stop rows; repetition penalty', () => {
    const model = randomModel(GPT2_CONFIG, 7);
    const prompt = [[1, 2, 3], [4, 5, 6]];
    const greedy = model.generate(prompt, { maxNewTokens: 8, eosTokenId: null }).toArray() as number[][];
    const s1 = model.generate(prompt, { maxNewTokens: 8, eosTokenId: null, doSample: true, temperature: 1.5, seed: 3 }).toArray();
    const s2 = model.generate(prompt, { maxNewTokens: 8, eosTokenId: null, doSample: true, temperature: 1.5, seed: 3 }).toArray();
    assert.deepEqual(s1, s2);
    assert.deepEqual(model.generate(prompt, { maxNewTokens: 8, eosTokenId: null, doSample: true, topK: 1, seed: 1 }).toArray(), greedy);
    assert.deepEqual(model.generate(prompt, { maxNewTokens: 8, eosTokenId: null, doSample: true, topP: 1e-6, seed: 1 }).toArray(), greedy);
    // Stop on row 0's second generated token: row 0 pads after it, row 1 runs on until it meets a stop id or the limit.
    const stop = greedy[0][4];
    const out = model.generate(prompt, { maxNewTokens: 8, eosTokenId: [stop], padTokenId: 0 }).toArray() as number[][];
    const firstStop = greedy[0].slice(3).indexOf(stop);
    assert.deepEqual(out[0].slice(0, 4 + firstStop), greedy[0].slice(0, 4 + firstStop));
    assert.ok(out[0].slice(4 + firstStop).every((t) => t === 0));
    // A huge repetition penalty never repeats a token already in the row (while unseen tokens remain).
    const rep = model.generate([[1]], { maxNewTokens: 10, eosTokenId: null, repetitionPenalty: 1e9 }).toArray() as number[][];
    assert.equal(new Set(rep[0]).size, rep[0].length);
  });

  test('sliding_window shorter than the positions: sequences up to the window are accepted, longer ones refused naming the field', () => {
    const cfg = { ...QWEN2_CONFIG, use_sliding_window: true, sliding_window: 8 };
    const model = randomModel(cfg, 8);
    assert.equal(model.maxPositions, 8);
    model.forward(tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int32' }));
    assert.throws(() => model.forward(tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9]], { dtype: 'int32' })), /sliding_window/);
    const mistral = AutoModelForCausalLM.fromConfig({ ...LLAMA_CONFIG, model_type: 'mistral', sliding_window: 16 });
    assert.equal(mistral.maxPositions, 16);
  });
});

/** LoRA targets per architecture (transformers names), with biases on where the layers have them. */
const LORA_TARGETS: Record<string, string[]> = {
  gpt2: ['c_attn', 'c_fc'],
  llama: ['q_proj', 'v_proj', 'down_proj'],
  qwen2: ['q_proj', 'k_proj', 'up_proj'],
};

describe('a LoRA training step on each architecture', () => {
  const tiny: Record<string, object> = {
    gpt2: { ...GPT2_CONFIG, n_embd: 8, n_head: 2, n_layer: 1, n_inner: 12, vocab_size: 11, n_positions: 8 },
    llama: { ...LLAMA_CONFIG, hidden_size: 8, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4, intermediate_size: 12, num_hidden_layers: 1, vocab_size: 11, max_position_embeddings: 8 },
    qwen2: { ...QWEN2_CONFIG, hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 10, num_hidden_layers: 1, vocab_size: 11, max_position_embeddings: 8 },
  };
  for (const [arch, cfg] of Object.entries(tiny)) {
    test(`${arch}: gradcheck of the loss w.r.t. every lora_A / lora_B, then an AdamW step lowers the loss`, () => {
      const model = randomModel(cfg, 9);
      const peft = getPeftModel(model, { r: 2, loraAlpha: 4, targetModules: LORA_TARGETS[arch], initLoraWeights: false });
      assert.ok(peft.baseModel.loraLayers().every(([, l]) => l instanceof LoraLinear));
      const ids = tensor([[1, 4, 2, 7, 3, 9], [5, 0, 8, 6, 10, 2]], { dtype: 'int32' });
      const loraParams = peft.trainableParameters();
      assert.equal(loraParams.length, 2 * peft.baseModel.loraLayers().length);
      // gradcheck runs in float64: move the whole model there, feed the checked tensors in as the LoRA weights.
      peft.to('cpu-float64');
      const owners = peft.baseModel.loraLayers().flatMap(([, l]) => [l.loraA.get('default'), l.loraB.get('default')]);
      const ids64 = ids.to('cpu-float64');
      gradcheck((...ws: Tensor[]) => {
        ws.forEach((w, i) => owners[i].registerParameter('weight', w));
        return peft.forward(ids64, { labels: ids64 }).loss!;
      }, loraParams, { atol: 1e-6, rtol: 1e-4 });
      // Back on float32: one optimizer step on the adapter only.
      const fresh = randomModel(cfg, 9);
      const p2 = getPeftModel(fresh, { r: 2, loraAlpha: 4, targetModules: LORA_TARGETS[arch], initLoraWeights: false });
      const frozen = new Map(fresh.namedParameters().filter(([n]) => !n.includes('lora_')).map(([n, p]) => [n, Float32Array.from(p.dataSync())]));
      const opt = new AdamW(p2.trainableParameters(), { lr: 1e-2 });
      const before = p2.forward(ids, { labels: ids }).loss!;
      before.backward();
      opt.step();
      opt.zeroGrad();
      const after = noGrad(() => p2.forward(ids, { labels: ids }).loss!.item());
      assert.ok(after < before.item(), `${arch}: loss ${before.item()} -> ${after}`);
      for (const [n, p] of fresh.namedParameters()) if (frozen.has(n)) assert.deepEqual(Float32Array.from(p.dataSync()), frozen.get(n), `${n} stayed frozen`);
    });
  }
});

describe('accounting', () => {
  test('estimateMemory on a Hugging Face architecture counts its parameters and the LoRA ones, on meta', () => {
    const model = randomModel(GPT2_CONFIG, 12);
    const full = estimateMemory(model, null, { mode: 'full', batch: 2, seq: 16 });
    assert.equal(full.totalParams, parameterCount(model.config));
    assert.equal(full.totalParams, model.numParameters());
    const lora = estimateMemory(model, { r: 4, targetModules: ['c_attn'] }, { mode: 'lora', batch: 2, seq: 16 });
    const C = GPT2_CONFIG.n_embd;
    assert.equal(lora.trainableParams, GPT2_CONFIG.n_layer * 4 * (C + 3 * C));
    assert.ok(lora.activations > 0 && lora.total < full.total);
    assert.throws(() => estimateMemory(model, null, { mode: 'full', batch: 1, seq: 21 }), /seq must be an integer in \[1, 20\]/);
  });
});

describe('PEFT adapters', () => {
  test('a BF16 adapter loads (values are the bf16 ones) and save -> load is bit-exact', async () => {
    const model = randomModel(LLAMA_CONFIG, 10);
    const peft = getPeftModel(model, { r: 3, loraAlpha: 6, targetModules: ['q_proj', 'o_proj'], initLoraWeights: false });
    const tensors: Record<string, StoredTensor> = {};
    const want = new Map<string, Float32Array>();
    for (const [n, p] of peft.namedParameters()) {
      const m = /^base_model\.model\.(.*)\.(lora_[AB])\.default\.weight$/.exec(n);
      if (!m) continue;
      const key = `base_model.model.${m[1]}.${m[2]}.weight`;
      tensors[key] = { shape: [...p.shape], data: Float32Array.from(p.dataSync(), (x) => x * 3), dtype: 'BF16' };
      want.set(n, storedValues(tensors[key]));
    }
    const cfg = { peft_type: 'LORA', r: 3, lora_alpha: 6, target_modules: ['q_proj', 'o_proj'], bias: 'none', fan_in_fan_out: false, task_type: 'CAUSAL_LM' };
    const files = { 'adapter_config.json': utf8(cfg), 'adapter_model.safetensors': writeSafetensors(tensors) };
    const loaded = await PeftModel.fromPretrained(randomModel(LLAMA_CONFIG, 10), files);
    for (const [n, p] of loaded.namedParameters()) if (want.has(n)) assert.deepEqual(Float32Array.from(p.dataSync()), want.get(n), n);
    const dir = mkdtempSync(path.join(tmpdir(), 'lowrank-bf16-adapter-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    await loaded.savePretrained(dir);
    const again = await PeftModel.fromPretrained(randomModel(LLAMA_CONFIG, 10), dir);
    for (const [n, p] of again.namedParameters()) if (want.has(n)) assert.deepEqual(Float32Array.from(p.dataSync()), want.get(n), `${n} after round trip`);
  });
});
