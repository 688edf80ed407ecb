/**
 * Hub-layout checkpoints: `model.safetensors`, or shards listed by
 * `model.safetensors.index.json`, read into a model whose keys are
 * transformers' own. Every header is read and every key and shape checked
 * before the first weight is written; then the shards are loaded one at a
 * time, so the extra memory is one shard's bytes (plus one tensor in flight).
 */
import {
  BF16Array, F16Array, Tensor, encodeSafetensors, f16ToF32Bits, parseSafetensorsHeader, safetensorsHeaderLength, tensor,
  type RawTensor, type SafetensorsEntry,
} from '@lowrank/core';
import type { Module } from '../module.ts';
import { parameterShapes, configToJson, type PretrainedConfig } from './config.ts';
import { checkFileName, parseJsonFile, type ModelSink, type ModelSource } from './source.ts';

export const WEIGHTS_NAME = 'model.safetensors';
export const WEIGHTS_INDEX_NAME = 'model.safetensors.index.json';
export const CONFIG_NAME = 'config.json';
export const GENERATION_CONFIG_NAME = 'generation_config.json';

/** Storage dtypes a loader may be asked for. */
export type WeightDtype = 'float32' | 'bfloat16' | 'float16';

export interface LoadWeightsOptions {
  /** Backend for the parameters (default: the default backend). */
  backend?: string;
  /**
   * Storage of the weight matrices (parameters of rank >= 2), as
   * `loadStateDict({ dtype })`: 'bfloat16' / 'float16' store them in 16 bits
   * and frozen (a checkpoint stored in that dtype is read straight into the
   * storage, no float32 copy); norms and biases stay float32. Default float32.
   */
  dtype?: WeightDtype;
}

const WEIGHT_DTYPES: readonly string[] = ['float32', 'bfloat16', 'float16'];

/** Non-parameter buffers some checkpoints carry, skipped by the last two name segments. */
const SKIPPED_BUFFERS = ['attn.bias', 'attn.masked_bias', 'rotary_emb.inv_freq'];

const MAX_INDEX_KEYS = 1_000_000;
const MAX_SHARDS = 100_000;
const LIST_LIMIT = 12;

/** Where one checkpoint tensor goes. */
interface Planned {
  fileKey: string;
  key: string;
  shard: string;
  shape: number[];
}

/** The values a float parameter gets from one stored tensor: the single place stored dtypes are widened. */
export function widenTensor(e: SafetensorsEntry, data: Uint8Array): Float32Array {
  const n = e.numel;
  const view = new DataView(data.buffer, data.byteOffset + e.begin, e.end - e.begin);
  const out = new Float32Array(n);
  if (e.fileDtype === 'F32') {
    if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(data.subarray(e.begin, e.end));
    else for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  } else if (e.fileDtype === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  } else if (e.fileDtype === 'F16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = f16ToF32Bits(view.getUint16(2 * i, true));
  } else if (e.fileDtype === 'F64') {
    for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
  } else {
    throw new Error(`tensor '${e.name}': stored as ${e.fileDtype}, not a float dtype`);
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The raw 16-bit values of a tensor stored as BF16 (`kind` bfloat16) or F16 (float16), or null for another file dtype. */
function storedHalves(e: SafetensorsEntry, data: Uint8Array, kind: 'bfloat16' | 'float16'): BF16Array | F16Array | null {
  if (e.fileDtype !== (kind === 'bfloat16' ? 'BF16' : 'F16')) return null;
  const out = kind === 'bfloat16' ? new BF16Array(e.numel) : new F16Array(e.numel);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(data.subarray(e.begin, e.end));
  else {
    const view = new DataView(data.buffer, data.byteOffset + e.begin, e.end - e.begin);
    for (let i = 0; i < e.numel; i++) out[i] = view.getUint16(2 * i, true);
  }
  return out;
}

/**
 * The parameter for one stored tensor: float32, or for a weight matrix under a
 * 16-bit `dtype` 16-bit storage (the file's bits when it is stored so, else
 * rounded from the widened values), frozen.
 */
function loadedTensor(e: SafetensorsEntry, data: Uint8Array, shape: number[], opts: LoadWeightsOptions): Tensor {
  const dtype = opts.dtype ?? 'float32';
  if (dtype === 'float32' || shape.length < 2) {
    const t = tensor(widenTensor(e, data), { shape, backend: opts.backend });
    return t.requiresGrad_(true);
  }
  // A 16-bit array passed to tensor() holds bits of its kind (see toHalf).
  const values = storedHalves(e, data, dtype) ?? widenTensor(e, data);
  return tensor(values, { shape, dtype, backend: opts.backend });
}

const FLOAT_FILE_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

function listed(title: string, items: string[]): string {
  const shown = items.slice(0, LIST_LIMIT).join(', ');
  const more = items.length > LIST_LIMIT ? ` and ${items.length - LIST_LIMIT} more` : '';
  return `${title} (${items.length}): ${shown}${more}`;
}

/** Shard names of a checkpoint and, for an index, which keys each must hold. */
export interface ShardPlan {
  shards: string[];
  /** Key -> shard, from the index (null for a single file). */
  weightMap: Map<string, string> | null;
}

/**
 * Finds the checkpoint files: `model.safetensors`, else the index (validated:
 * a `weight_map` object of key -> plain `.safetensors` file names).
 */
export async function planShards(src: ModelSource): Promise<ShardPlan> {
  if (await exists(src, WEIGHTS_NAME)) return { shards: [WEIGHTS_NAME], weightMap: null };
  const indexBytes = await src.read(WEIGHTS_INDEX_NAME);
  if (!indexBytes) {
    const hint = (await exists(src, 'pytorch_model.bin')) ? ' (pytorch_model.bin is not supported: convert it to safetensors)' : '';
    throw new Error(`${src.describe}: neither ${WEIGHTS_NAME} nor ${WEIGHTS_INDEX_NAME} found (expected the model weights in safetensors)${hint}`);
  }
  const where = `${src.describe}/${WEIGHTS_INDEX_NAME}`;
  const json = parseJsonFile(indexBytes, where);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${where}: expected a JSON object with a weight_map`);
  const map = (json as Record<string, unknown>).weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${where}: weight_map must be an object of tensor name -> shard file, got ${JSON.stringify(map)?.slice(0, 80)}`);
  const entries = Object.entries(map as Record<string, unknown>);
  if (entries.length === 0) throw new Error(`${where}: weight_map is empty`);
  if (entries.length > MAX_INDEX_KEYS) throw new Error(`${where}: weight_map lists ${entries.length} tensors, over the limit ${MAX_INDEX_KEYS}`);
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [key, file] of entries) {
    if (typeof file !== 'string') throw new Error(`${where}: weight_map['${key}'] must be a file name, got ${JSON.stringify(file)}`);
    checkFileName(file, `${where}: weight_map['${key}']`);
    if (!file.endsWith('.safetensors')) throw new Error(`${where}: weight_map['${key}'] = ${JSON.stringify(file)} is not a .safetensors file`);
    weightMap.set(key, file);
    if (!shards.includes(file)) {
      if (shards.length >= MAX_SHARDS) throw new Error(`${where}: more than ${MAX_SHARDS} shard files`);
      shards.push(file);
    }
  }
  return { shards, weightMap };
}

async function exists(src: ModelSource, name: string): Promise<boolean> {
  if (src.size) return (await src.size(name)) !== null;
  if (src.readRange) return (await src.readRange(name, 0, 8)) !== null;
  return (await src.read(name)) !== null;
}

/** A shard's header alone (a range read when the source can, else the whole file, dropped after). */
async function readHeader(src: ModelSource, shard: string): Promise<ReturnType<typeof parseSafetensorsHeader>> {
  const where = `${src.describe}/${shard}`;
  try {
    if (src.readRange) {
      const size = src.size ? await src.size(shard) : null;
      const first = await src.readRange(shard, 0, 8);
      if (!first) throw new Error('file not found (the index names it)');
      const n = safetensorsHeaderLength(first, size ?? Number.MAX_SAFE_INTEGER);
      const head = await src.readRange(shard, 0, 8 + n);
      if (!head || head.length < 8 + n) throw new Error(`truncated header (${head?.length ?? 0} of ${8 + n} bytes)`);
      return parseSafetensorsHeader(head, size);
    }
    const bytes = await src.read(shard);
    if (!bytes) throw new Error('file not found (the index names it)');
    return parseSafetensorsHeader(bytes);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
}

function isSkippedBuffer(key: string): boolean {
  const parts = key.split('.');
  const tail = parts.slice(-2).join('.');
  return SKIPPED_BUFFERS.includes(tail);
}

/**
 * Checks every shard header against the parameters a config needs, and
 * returns where each stored tensor goes. Throws one error listing every
 * unexpected, missing, duplicated and mis-shaped key.
 */
export async function planWeights(src: ModelSource, config: PretrainedConfig, prefix: string, tied: readonly string[]): Promise<Planned[]> {
  const expected = parameterShapes(config);
  for (const k of tied) expected.delete(k);
  const { shards, weightMap } = await planShards(src);
  const unexpected: string[] = [];
  const mismatched: string[] = [];
  const duplicated: string[] = [];
  const misplaced: string[] = [];
  const badDtype: string[] = [];
  const seen = new Map<string, string>();
  const plan: Planned[] = [];
  const inFiles = new Set<string>();
  for (const shard of shards) {
    for (const e of (await readHeader(src, shard)).entries) {
      inFiles.add(e.name);
      if (weightMap && weightMap.get(e.name) !== shard) misplaced.push(`'${e.name}' is in ${shard} but the index says ${weightMap.get(e.name) ?? 'nothing'}`);
      let key = e.name;
      if (!expected.has(key) && expected.has(`${prefix}.${key}`)) key = `${prefix}.${key}`;
      const shape = expected.get(key);
      if (!shape) {
        if (isSkippedBuffer(e.name) || tied.includes(e.name)) continue;
        unexpected.push(`'${e.name}'`);
        continue;
      }
      if (seen.has(key)) {
        duplicated.push(`'${key}' (from '${seen.get(key)}' and '${e.name}')`);
        continue;
      }
      seen.set(key, e.name);
      if (!FLOAT_FILE_DTYPES.has(e.fileDtype)) badDtype.push(`'${e.name}' is ${e.fileDtype}`);
      if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
        mismatched.push(`'${e.name}': [${e.shape.join(', ')}] in the checkpoint, [${shape.join(', ')}] in the model`);
      }
      plan.push({ fileKey: e.name, key, shard, shape });
    }
  }
  if (weightMap) for (const k of weightMap.keys()) if (!inFiles.has(k)) misplaced.push(`'${k}' is listed in the index (${weightMap.get(k)}) but in no shard`);
  const missing = [...expected.keys()].filter((k) => !seen.has(k)).map((k) => `'${k}'`);
  const problems: string[] = [];
  if (unexpected.length) problems.push(listed('unexpected key(s)', unexpected));
  if (missing.length) problems.push(listed('missing key(s)', missing));
  if (mismatched.length) problems.push(listed('shape mismatch(es)', mismatched));
  if (duplicated.length) problems.push(listed('duplicated key(s)', duplicated));
  if (misplaced.length) problems.push(listed('index inconsistencies', misplaced));
  if (badDtype.length) problems.push(listed('non-float dtype(s)', badDtype));
  if (problems.length) {
    throw new Error(`${src.describe}: the checkpoint does not match the ${config.modelType} model of config.json (nothing was loaded):\n  ${problems.join('\n  ')}`);
  }
  return plan;
}

/**
 * Loads planned tensors shard by shard into `model`, replacing its
 * parameters (built on any backend, `meta` included) by tensors on `backend`.
 */
export async function loadPlanned(model: Module, src: ModelSource, plan: readonly Planned[], opts: LoadWeightsOptions = {}): Promise<void> {
  if (opts.dtype !== undefined && !WEIGHT_DTYPES.includes(opts.dtype)) {
    throw new Error(`fromPretrained: dtype must be 'float32', 'bfloat16' or 'float16', got ${JSON.stringify(opts.dtype)}`);
  }
  const byShard = new Map<string, Planned[]>();
  for (const p of plan) {
    const list = byShard.get(p.shard) ?? [];
    list.push(p);
    byShard.set(p.shard, list);
  }
  // A 16-bit load reads tensor by tensor where the source can: the point of the dtype is memory,
  // and a whole shard in memory next to the model would cost as much as the float32 weights.
  const stream = src.readRange !== undefined && opts.dtype !== undefined && opts.dtype !== 'float32';
  for (const [shard, items] of byShard) {
    if (stream) await loadShardByRanges(model, src, shard, items, opts);
    else await loadShardWhole(model, src, shard, items, opts);
  }
}

function changed(src: ModelSource, shard: string, p: Planned, e: SafetensorsEntry | undefined): Error | null {
  if (e && !e.shape.some((d, i) => d !== p.shape[i])) return null;
  return new Error(`${src.describe}/${shard}: tensor '${p.fileKey}' changed while loading`);
}

async function loadShardWhole(model: Module, src: ModelSource, shard: string, items: Planned[], opts: LoadWeightsOptions): Promise<void> {
  let bytes: Uint8Array | null = await src.read(shard);
  if (!bytes) throw new Error(`${src.describe}/${shard}: file disappeared while loading`);
  let header;
  try {
    header = parseSafetensorsHeader(bytes);
  } catch (err) {
    throw new Error(`${src.describe}/${shard}: ${(err as Error).message}`);
  }
  const entries = new Map(header.entries.map((e) => [e.name, e]));
  const data = bytes.subarray(header.dataStart);
  for (const p of items) {
    const e = entries.get(p.fileKey);
    const err = changed(src, shard, p, e);
    if (err) throw err;
    setParameter(model, p.key, loadedTensor(e!, data, p.shape, opts));
  }
  bytes = null; // the shard's bytes go before the next shard is read
}

/** One range read per tensor: the extra memory is one tensor's bytes. */
async function loadShardByRanges(model: Module, src: ModelSource, shard: string, items: Planned[], opts: LoadWeightsOptions): Promise<void> {
  const read = src.readRange!.bind(src);
  const where = `${src.describe}/${shard}`;
  const header = await readHeader(src, shard);
  const entries = new Map(header.entries.map((e) => [e.name, e]));
  for (const p of items) {
    const e = entries.get(p.fileKey);
    const err = changed(src, shard, p, e);
    if (err) throw err;
    const bytes = await read(shard, header.dataStart + e!.begin, header.dataStart + e!.end);
    if (!bytes || bytes.length !== e!.end - e!.begin) throw new Error(`${where}: tensor '${p.fileKey}' is truncated (${bytes?.length ?? 0} of ${e!.end - e!.begin} bytes)`);
    setParameter(model, p.key, loadedTensor({ ...e!, begin: 0, end: e!.end - e!.begin }, bytes, p.shape, opts));
  }
}

/** Replaces the parameter at a dotted key by `t` (named by its key); the old tensor is freed. */
function setParameter(model: Module, key: string, t: Tensor): void {
  const dot = key.lastIndexOf('.');
  const owner = model.getSubmodule(key.slice(0, dot));
  const name = key.slice(dot + 1);
  const old = owner.ownParameters().find(([n]) => n === name)?.[1];
  owner.registerParameter(name, t);
  t.name = key;
  old?.dispose();
}

export interface SaveWeightsOptions {
  /** Largest shard in bytes before the checkpoint is split (default 5 GB, transformers' default). */
  maxShardSize?: number;
}

/** The model's tensors to save (tied aliases left out), checked against the config's keys. */
function savedTensors(model: Module, config: PretrainedConfig, tied: readonly string[]): [string, Tensor][] {
  const expected = parameterShapes(config);
  for (const k of tied) expected.delete(k);
  const sd = model.stateDict();
  const extra = Object.keys(sd).filter((k) => !expected.has(k) && !tied.includes(k));
  if (extra.length) {
    const lora = extra.some((k) => /\.(lora_[AB]|base_layer)\./.test(k));
    throw new Error(`savePretrained: the model has parameters outside the ${config.modelType} layout: ${extra.slice(0, 4).join(', ')}${extra.length > 4 ? ', ...' : ''}` +
      (lora ? ' (LoRA layers: call mergeAndUnload() first, or save the adapter with peft.savePretrained)' : ''));
  }
  const out: [string, Tensor][] = [];
  for (const k of expected.keys()) {
    const t = sd[k];
    if (!t) throw new Error(`savePretrained: the model has no parameter '${k}'`);
    if (!t.backend.hasStorage) throw new Error(`savePretrained: '${k}' lives on the '${t.backend.name}' backend and holds no values`);
    out.push([k, t]);
  }
  return out;
}

function shardName(i: number, n: number): string {
  const pad = (x: number): string => String(x).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

/** Names of weight files a save may leave stale (removed when the new save commits). */
export function isWeightFile(name: string): boolean {
  return name === WEIGHTS_NAME || name === WEIGHTS_INDEX_NAME || /^model-\d{5}-of-\d{5}\.safetensors$/.test(name);
}

/**
 * Writes config.json, generation_config.json (when known) and the weights
 * (float32, sharded above `maxShardSize` with an index) into a sink, then
 * commits: a directory sink makes every file visible only once all are written.
 */
export async function saveWeights(
  model: Module, config: PretrainedConfig, tied: readonly string[], sink: ModelSink,
  extra: { generationConfig?: Readonly<Record<string, unknown>> | null; architecture: string }, opts: SaveWeightsOptions = {},
): Promise<string[]> {
  const max = opts.maxShardSize ?? 5e9;
  if (!(typeof max === 'number' && max > 0)) throw new Error(`savePretrained: maxShardSize must be a positive number of bytes, got ${String(max)}`);
  const tensors = savedTensors(model, config, tied);
  const groups: [string, Tensor][][] = [[]];
  let bytes = 0;
  for (const entry of tensors) {
    const size = entry[1].size * 4;
    if (bytes > 0 && bytes + size > max) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1].push(entry);
    bytes += size;
  }
  const written: string[] = [];
  const enc = new TextEncoder();
  const json = (o: unknown): Uint8Array => enc.encode(`${JSON.stringify(o, null, 2)}\n`);
  try {
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (let i = 0; i < groups.length; i++) {
      const name = groups.length === 1 ? WEIGHTS_NAME : shardName(i, groups.length);
      const raw: Record<string, RawTensor> = {};
      for (const [k, t] of groups[i]) {
        raw[k] = { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync()) };
        weightMap[k] = name;
        total += t.size * 4;
      }
      await sink.write(name, encodeSafetensors(raw, { format: 'pt' }));
      written.push(name);
    }
    if (groups.length > 1) {
      const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
      await sink.write(WEIGHTS_INDEX_NAME, json({ metadata: { total_size: total }, weight_map: sorted }));
      written.push(WEIGHTS_INDEX_NAME);
    }
    if (extra.generationConfig) {
      await sink.write(GENERATION_CONFIG_NAME, json(extra.generationConfig));
      written.push(GENERATION_CONFIG_NAME);
    }
    const cfg = configToJson(config, 'float32');
    if (!Array.isArray(cfg.architectures)) cfg.architectures = [extra.architecture];
    await sink.write(CONFIG_NAME, json(Object.fromEntries(Object.keys(cfg).sort().map((k) => [k, cfg[k]]))));
    written.push(CONFIG_NAME);
    await sink.commit?.((name) => isWeightFile(name) && !written.includes(name));
  } catch (err) {
    await sink.abort?.();
    throw err;
  }
  return written;
}
