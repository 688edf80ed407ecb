/**
 * Bad and hostile model directories: config.json fields lowrank does not
 * implement, absurd or malformed sizes, broken index files and checkpoints
 * that do not match. Each is one clear error naming the field, key or file,
 * raised before any parameter is allocated.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { memory } from '@lowrank/core';
import { AutoModelForCausalLM, parseConfig, type ModelSource } from '@lowrank/nn';
import '@lowrank/nn/node';
import { utf8, writeSafetensors, type StoredTensor } from './helpers.ts';

const LLAMA = {
  model_type: 'llama', vocab_size: 16, hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1,
  intermediate_size: 12, num_hidden_layers: 1, max_position_embeddings: 16,
};
const GPT2 = { model_type: 'gpt2', vocab_size: 16, n_embd: 8, n_head: 2, n_layer: 1, n_positions: 8 };

/** A valid checkpoint for a config: every parameter the model needs, random values. */
function checkpoint(cfg: object): Record<string, StoredTensor> {
  const model = AutoModelForCausalLM.fromConfig(cfg);
  const out: Record<string, StoredTensor> = {};
  for (const [k, p] of Object.entries(model.stateDict())) {
    if (model.tiedKeys().includes(k)) continue;
    out[k] = { shape: [...p.shape], data: Float32Array.from(p.dataSync()) };
  }
  return out;
}

async function rejects(files: Record<string, Uint8Array>, re: RegExp): Promise<void> {
  const before = memory().liveBytes;
  await assert.rejects(AutoModelForCausalLM.fromPretrained(files), re);
  assert.equal(memory().liveBytes, before, 'a failed load leaves no tensors behind');
}

describe('config.json', () => {
  const bad: [string, object, RegExp][] = [
    ['unknown model_type', { ...LLAMA, model_type: 'bert' }, /model_type "bert" is not supported \(supported: gpt2, llama, mistral, qwen2\)/],
    ['rope_scaling', { ...LLAMA, rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling \{"rope_type":"llama3","factor":8\} is not supported/],
    ['hidden_act', { ...LLAMA, hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/],
    ['activation_function', { ...GPT2, activation_function: 'gelu' }, /activation_function "gelu" is not supported/],
    ['quantization', { ...LLAMA, quantization_config: { bits: 4 } }, /quantization_config .* is not supported/],
    ['huge hidden_size', { ...LLAMA, hidden_size: 1e12 }, /hidden_size 1000000000000 exceeds the supported maximum/],
    ['negative layers', { ...LLAMA, num_hidden_layers: -2 }, /num_hidden_layers must be a positive integer, got -2/],
    ['fractional heads', { ...LLAMA, num_attention_heads: 2.5 }, /num_attention_heads must be a positive integer, got 2.5/],
    ['string size', { ...GPT2, n_embd: '8' }, /n_embd must be a positive integer, got "8"/],
    ['missing size', { model_type: 'gpt2', vocab_size: 16, n_head: 2, n_layer: 1 }, /n_embd is missing/],
    ['kv heads', { ...LLAMA, num_attention_heads: 4, num_key_value_heads: 3 }, /num_key_value_heads 3 does not divide num_attention_heads 4/],
    ['indivisible', { ...GPT2, n_embd: 9 }, /n_embd 9 is not divisible by n_head 2/],
    ['odd head_dim', { ...LLAMA, head_dim: 5 }, /head_dim 5 must be even/],
    ['one giant tensor', { ...LLAMA, vocab_size: 4_000_000, hidden_size: 60000, num_attention_heads: 1, num_key_value_heads: 1, head_dim: 8 }, /one parameter tensor would hold/],
    ['too many parameters', { ...LLAMA, hidden_size: 32768, num_attention_heads: 256, num_key_value_heads: 256, intermediate_size: 32768, num_hidden_layers: 1024 }, /parameters, over the supported/],
    ['bad eps', { ...LLAMA, rms_norm_eps: -1 }, /rms_norm_eps must be a number in/],
    ['bad tie', { ...LLAMA, tie_word_embeddings: 'yes' }, /tie_word_embeddings must be true or false/],
    ['not an object', [1, 2], /expected a JSON object, got an array/],
  ];
  for (const [name, cfg, re] of bad) {
    test(`${name} is an error naming the field and value`, async () => {
      assert.throws(() => parseConfig(cfg), re);
      await rejects({ 'config.json': utf8(cfg), 'model.safetensors': writeSafetensors({}) }, re);
    });
  }

  test('config.json that is not JSON, or missing, names the file', async () => {
    await rejects({ 'config.json': new TextEncoder().encode('{"model_type": ') }, /config\.json: not valid JSON/);
    await rejects({ 'model.safetensors': writeSafetensors({}) }, /config\.json not found \(expected the model's Hugging Face config/);
    await rejects({ 'config.json': utf8(LLAMA) }, /neither model\.safetensors nor model\.safetensors\.index\.json found/);
  });

  test('unknown option names of fromPretrained suggest the right one', async () => {
    await assert.rejects(AutoModelForCausalLM.fromPretrained({}, { torch_dtype: 'float32' } as never), /unknown option 'torch_dtype' \(use dtype/);
  });
});

describe('checkpoints that do not match', () => {
  test('unknown, missing and mis-shaped keys: one error listing them all, nothing allocated', async () => {
    const t = checkpoint(LLAMA);
    delete t['model.norm.weight'];
    t['model.layers.0.mlp.up_proj.weight'] = { shape: [12, 9], data: new Float32Array(108) };
    t['model.layers.0.self_attn.rogue.weight'] = { shape: [2], data: new Float32Array(2) };
    const files = { 'config.json': utf8(LLAMA), 'model.safetensors': writeSafetensors(t) };
    const err = await AutoModelForCausalLM.fromPretrained(files).catch((e: Error) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /nothing was loaded/);
    assert.match(err.message, /unexpected key\(s\) \(1\): 'model\.layers\.0\.self_attn\.rogue\.weight'/);
    assert.match(err.message, /missing key\(s\) \(1\): 'model\.norm\.weight'/);
    assert.match(err.message, /'model\.layers\.0\.mlp\.up_proj\.weight': \[12, 9\] in the checkpoint, \[12, 8\] in the model/);
    await rejects(files, /nothing was loaded/);
  });

  test('an untied model needs lm_head; a tied one ignores a stored lm_head; non-float dtypes are refused', async () => {
    const t = checkpoint(LLAMA);
    delete t['lm_head.weight'];
    await rejects({ 'config.json': utf8(LLAMA), 'model.safetensors': writeSafetensors(t) }, /missing key\(s\) \(1\): 'lm_head\.weight'/);
    const tied = { ...LLAMA, tie_word_embeddings: true };
    const withHead = checkpoint(tied);
    withHead['lm_head.weight'] = { shape: [16, 8], data: new Float32Array(128) };
    const m = await AutoModelForCausalLM.fromPretrained({ 'config.json': utf8(tied), 'model.safetensors': writeSafetensors(withHead) });
    assert.equal(m.getParameter('lm_head.weight'), m.getParameter('model.embed_tokens.weight'));
    const ints = checkpoint(LLAMA);
    const { 'model.norm.weight': norm, ...rest } = ints;
    const bytes = writeSafetensors(rest, { 'model.norm.weight': { dtype: 'I32', shape: norm.shape, bytes: new Uint8Array(4 * norm.data.length) } });
    await rejects({ 'config.json': utf8(LLAMA), 'model.safetensors': bytes }, /non-float dtype\(s\) \(1\): 'model\.norm\.weight' is I32/);
  });

  test('the same tensor under a prefixed and an unprefixed key is a duplicate', async () => {
    const t = checkpoint(GPT2);
    t['wte.weight'] = t['transformer.wte.weight'];
    await rejects({ 'config.json': utf8(GPT2), 'model.safetensors': writeSafetensors(t) }, /duplicated key\(s\) \(1\): 'transformer\.wte\.weight'/);
  });

  test('a corrupt safetensors file names the file', async () => {
    const bytes = writeSafetensors(checkpoint(GPT2));
    await rejects({ 'config.json': utf8(GPT2), 'model.safetensors': bytes.subarray(0, bytes.length - 3) }, /model\.safetensors: safetensors (tensor|: tensors cover)/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
    await rejects({ 'config.json': utf8(GPT2), 'model.safetensors': huge }, /model\.safetensors: safetensors: header length/);
  });
});

describe('model.safetensors.index.json', () => {
  const shardFiles = (weightMap: unknown, shards: Record<string, Uint8Array> = {}): Record<string, Uint8Array> => ({
    'config.json': utf8(GPT2), 'model.safetensors.index.json': utf8({ metadata: {}, weight_map: weightMap }), ...shards,
  });

  test('malformed indexes are refused naming the problem', async () => {
    await rejects(shardFiles([1, 2]), /weight_map must be an object/);
    await rejects(shardFiles({}), /weight_map is empty/);
    await rejects(shardFiles({ 'transformer.wte.weight': 7 }), /weight_map\['transformer\.wte\.weight'\] must be a file name/);
    await rejects({ 'config.json': utf8(GPT2), 'model.safetensors.index.json': new TextEncoder().encode('nope') }, /model\.safetensors\.index\.json: not valid JSON/);
  });

  test('shard names that leave the model directory are refused', async () => {
    for (const evil of ['../evil.safetensors', '/etc/passwd.safetensors', 'a/../../b.safetensors', 'C:\\x.safetensors', 'model.bin']) {
      await rejects(shardFiles({ 'transformer.wte.weight': evil }), /is not a plain relative file name|is not a \.safetensors file/);
    }
  });

  test('keys in the wrong shard, listed but absent, or a shard that is missing', async () => {
    const t = checkpoint(GPT2);
    const keys = Object.keys(t);
    const a: Record<string, StoredTensor> = {};
    const b: Record<string, StoredTensor> = {};
    keys.forEach((k, i) => ((i % 2 ? a : b)[k] = t[k]));
    const map: Record<string, string> = {};
    for (const k of Object.keys(a)) map[k] = 'a.safetensors';
    for (const k of Object.keys(b)) map[k] = 'b.safetensors';
    const shards = { 'a.safetensors': writeSafetensors(a), 'b.safetensors': writeSafetensors(b) };
    const ok = await AutoModelForCausalLM.fromPretrained(shardFiles(map, shards));
    assert.equal(ok.config.modelType, 'gpt2');
    const wrong = { ...map, [keys[1]]: 'b.safetensors' };
    await rejects(shardFiles(wrong, shards), new RegExp(`index inconsistencies .*'${keys[1].replace(/\./g, '\\.')}' is in a\\.safetensors but the index says b\\.safetensors`));
    await rejects(shardFiles({ ...map, 'transformer.ghost': 'a.safetensors' }, shards), /'transformer\.ghost' is listed in the index \(a\.safetensors\) but in no shard/);
    await rejects(shardFiles(map, { 'a.safetensors': shards['a.safetensors'] }), /b\.safetensors: file not found \(the index names it\)/);
  });
});

describe('sources', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'lowrank-src-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  test('a missing directory, a file instead of a directory, or no resolver: errors name the path and what was expected', async () => {
    await assert.rejects(AutoModelForCausalLM.fromPretrained(path.join(root, 'nope')), /nope: no such directory \(expected a model directory with config\.json/);
    writeFileSync(path.join(root, 'file'), 'x');
    await assert.rejects(AutoModelForCausalLM.fromPretrained(path.join(root, 'file')), /file: not a directory/);
    await assert.rejects(AutoModelForCausalLM.fromPretrained(root), /config\.json not found \(expected the model's Hugging Face config/);
  });

  test('a custom ModelSource with no range reads works; its missing file is reported by name', async () => {
    const files = new Map<string, Uint8Array>([['config.json', utf8(GPT2)], ['model.safetensors', writeSafetensors(checkpoint(GPT2))]]);
    const reads: string[] = [];
    const src: ModelSource = { describe: 'custom', read: async (n) => (reads.push(n), files.get(n) ?? null) };
    const m = await AutoModelForCausalLM.fromPretrained(src);
    assert.equal(m.config.modelType, 'gpt2');
    assert.ok(reads.includes('model.safetensors'));
    files.delete('model.safetensors');
    await assert.rejects(AutoModelForCausalLM.fromPretrained(src), /custom: neither model\.safetensors nor/);
  });
});
