import {
  decodeCheckpoint, encodeCheckpoint, globalRng, isRawTensor, type CheckpointValue, type RawTensor,
} from '@lowrank/core';
import { Sha256 } from './sha256.ts';
import type { Module } from './module.ts';
import { toRaw, type Optimizer, type BaseHyper, type OptimizerStateDict } from './optim/optimizer.ts';
import type { LambdaLR } from './optim/schedules.ts';

/** Anything whose random state resumes (the data `BatchSampler`, core `Rng`). */
export interface Resumable {
  getState(): number[];
  setState(state: readonly number[]): void;
}

/** What `saveCheckpoint` stores. */
export interface CheckpointInput {
  model: Module;
  optimizer?: Optimizer<BaseHyper>;
  scheduler?: LambdaLR;
  /** Optimizer steps taken so far. */
  step: number;
  /** The training data sampler (its generator state is saved). */
  sampler?: Resumable;
  /** Any extra checkpoint values (config, tokenizer, metrics). */
  extra?: CheckpointValue;
}

/** A decoded, verified checkpoint. */
export interface Checkpoint {
  step: number;
  /** Parameters by their first state-dict key (tied weights once). */
  model: Record<string, RawTensor>;
  optimizer: OptimizerStateDict | null;
  scheduler: { lastStep: number; baseLrs: number[] } | null;
  /** core `globalRng.getState()` at save time. */
  rng: number[];
  sampler: number[] | null;
  extra: CheckpointValue;
}

/** Objects to restore a checkpoint into. */
export interface RestoreTargets {
  model: Module;
  optimizer?: Optimizer<BaseHyper>;
  scheduler?: LambdaLR;
  sampler?: Resumable;
  /** Restore core's global RNG (dropout, init) too; default true. */
  rng?: boolean;
}

const KIND = 'lowrank-training-checkpoint';

/**
 * Everything needed to resume training exactly, as checkpoint values (tensors copied).
 * @example const value = checkpointValue({ model, optimizer, step: 100, sampler });
 */
export function checkpointValue(s: CheckpointInput): CheckpointValue {
  const model: Record<string, RawTensor> = {};
  for (const [k, p] of s.model.namedParameters()) model[k] = toRaw(p);
  const body: { [key: string]: CheckpointValue } = {
    kind: KIND,
    step: s.step,
    model,
    optimizer: s.optimizer ? (s.optimizer.stateDict() as unknown as CheckpointValue) : null,
    scheduler: s.scheduler ? s.scheduler.stateDict() : null,
    rng: globalRng.getState(),
    sampler: s.sampler ? s.sampler.getState() : null,
    extra: s.extra ?? null,
  };
  return { ...body, sha256: digest(body) };
}

/**
 * A checkpoint as bytes (what `saveCheckpoint` writes): for browsers, downloads, IndexedDB.
 * @example const bytes = serializeCheckpoint({ model, optimizer, step }); parseCheckpoint(bytes);
 */
export function serializeCheckpoint(s: CheckpointInput): Uint8Array<ArrayBuffer> {
  const bytes = encodeCheckpoint(checkpointValue(s));
  // typed over a plain ArrayBuffer, what `new Blob([bytes])` accepts (msgpackr never returns a shared one)
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

/** Decodes and verifies checkpoint bytes: structure, checksum, then every value's type and range. @example parseCheckpoint(encodeCheckpoint(checkpointValue(s))) */
export function parseCheckpoint(bytes: Uint8Array): Checkpoint {
  const v = decodeCheckpoint(bytes);
  if (!isMap(v)) throw new Error('expected a map at the top level');
  const o = v;
  if (o.kind !== KIND) throw new Error(`kind is ${show(o.kind)}, expected '${KIND}'`);
  const { sha256, ...body } = o;
  if (typeof sha256 !== 'string' || digest(body) !== sha256) {
    throw new Error('checksum mismatch: the file is corrupted (SHA-256 of its contents differs from the stored one)');
  }
  const ckpt: Checkpoint = {
    step: o.step as number,
    model: o.model as unknown as Record<string, RawTensor>,
    optimizer: (o.optimizer ?? null) as unknown as OptimizerStateDict | null,
    scheduler: (o.scheduler ?? null) as unknown as Checkpoint['scheduler'],
    rng: o.rng as number[],
    sampler: (o.sampler ?? null) as number[] | null,
    extra: o.extra ?? null,
  };
  const problems = checkCheckpoint(ckpt);
  if (problems.length) throw new Error(`invalid value(s):\n  ${problems.join('\n  ')}`);
  return ckpt;
}

function isMap(v: unknown): v is { [key: string]: CheckpointValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !isRawTensor(v);
}

function show(v: unknown): string {
  if (typeof v === 'number') return String(v);
  try {
    return (JSON.stringify(v) ?? String(v)).slice(0, 80);
  } catch {
    return String(v);
  }
}

const isUint32 = (x: unknown): boolean => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 2 ** 32;

/** Problems with a generator state of `n` uint32 words (plus, for core's Rng, a cached normal). */
function checkGeneratorState(s: unknown, what: string, withSpare: boolean): string[] {
  const n = withSpare ? 5 : 4;
  if (!Array.isArray(s) || s.length !== n) return [`${what} must be ${n} numbers, got ${show(s)}`];
  const words = s.slice(0, 4);
  if (!words.every(isUint32)) return [`${what} must hold uint32 integers, got ${show(words)}`];
  if (words.every((w) => w === 0)) return [`${what} is all zeros (xoshiro never leaves that state: the file is crafted or corrupt)`];
  if (withSpare && !(typeof s[4] === 'number' && (Number.isNaN(s[4]) || Number.isFinite(s[4])))) return [`${what}[4] (cached normal) must be a number, got ${show(s[4])}`];
  return [];
}

/** Every value's type and range, without touching any model: what `parseCheckpoint` and `restoreCheckpoint` check. */
export function checkCheckpoint(c: Checkpoint): string[] {
  const p: string[] = [];
  if (!(Number.isSafeInteger(c.step) && c.step >= 0)) p.push(`step must be a non-negative integer, got ${show(c.step)}`);
  if (!isMap(c.model)) p.push('model must be a map of parameter name -> tensor');
  else for (const [k, t] of Object.entries(c.model)) if (!isRawTensor(t)) p.push(`model['${k}'] is not a tensor`);
  p.push(...checkGeneratorState(c.rng, 'rng', true));
  if (c.sampler !== null) p.push(...checkGeneratorState(c.sampler, 'sampler', false));
  if (c.scheduler !== null) {
    const s = c.scheduler as unknown;
    if (!isMap(s)) p.push('scheduler must be a map { lastStep, baseLrs }');
    else {
      if (!(Number.isSafeInteger(s.lastStep) && (s.lastStep as number) >= 0)) p.push(`scheduler.lastStep must be a non-negative integer, got ${show(s.lastStep)}`);
      if (!Array.isArray(s.baseLrs) || !s.baseLrs.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0)) {
        p.push(`scheduler.baseLrs must be finite non-negative numbers, got ${show(s.baseLrs)}`);
      }
    }
  }
  if (c.optimizer !== null) {
    const o = c.optimizer as unknown;
    if (!isMap(o) || typeof o.type !== 'string' || !Array.isArray(o.groups) || !isMap(o.state)) p.push('optimizer must be a map { type, groups, state }');
    else if (!o.groups.every((g) => isMap(g) && isMap(g.hyper) && Array.isArray(g.params) && g.params.every((i) => Number.isSafeInteger(i) && (i as number) >= 0))) {
      p.push('optimizer.groups must be maps { hyper, params: indices }');
    } else if (!Object.values(o.state).every((st) => isMap(st) && Object.values(st).every((x) => typeof x === 'number' || isRawTensor(x)))) {
      p.push('optimizer.state must map parameter index -> { name: number | tensor }');
    }
  }
  return p;
}

/**
 * Loads a checkpoint into the model (strict), optimizer, scheduler, sampler and core RNG; returns its step.
 * @example const step = restoreCheckpoint(await loadCheckpoint(path), { model, optimizer, sampler });
 */
export function restoreCheckpoint(ckpt: Checkpoint, t: RestoreTargets): number {
  // Everything is checked first; the first write happens only once nothing can fail.
  const problems = checkCheckpoint(ckpt);
  const sd: Record<string, RawTensor> = isMap(ckpt.model) ? { ...ckpt.model } : {};
  // Tied weights are saved once: fill their other keys from the first one.
  const firstKey = new Map(t.model.namedParameters().map(([k, p]) => [p, k]));
  for (const [k, p] of Object.entries(t.model.stateDict())) {
    const canonical = firstKey.get(p);
    if (!(k in sd) && canonical !== undefined && canonical in sd) sd[k] = sd[canonical];
  }
  const modelError = t.model.checkStateDict(sd);
  if (modelError) problems.push(modelError);
  if (t.optimizer) {
    if (!ckpt.optimizer) problems.push('the checkpoint holds no optimizer state');
    else problems.push(...t.optimizer.checkStateDict(ckpt.optimizer));
  }
  if (t.scheduler && ckpt.scheduler && ckpt.scheduler.baseLrs?.length !== t.scheduler.baseLrs.length) {
    problems.push(`scheduler: ${ckpt.scheduler.baseLrs?.length} base lrs saved, ${t.scheduler.baseLrs.length} here`);
  }
  if (t.sampler && !ckpt.sampler) problems.push('the checkpoint holds no sampler state');
  if (problems.length) throw new Error(`restoreCheckpoint: nothing was restored:\n  ${problems.join('\n  ')}`);
  // The sampler validates its own state format; it goes first so that its refusal changes nothing.
  const samplerBefore = t.sampler?.getState();
  if (t.sampler) {
    try {
      t.sampler.setState(ckpt.sampler!);
    } catch (err) {
      throw new Error(`restoreCheckpoint: nothing was restored: sampler: ${(err as Error).message}`);
    }
  }
  try {
    t.model.loadStateDict(sd);
    if (t.optimizer) t.optimizer.loadStateDict(ckpt.optimizer!);
    if (t.scheduler && ckpt.scheduler) t.scheduler.loadStateDict(ckpt.scheduler);
    if (t.rng ?? true) globalRng.setState(ckpt.rng);
  } catch (err) {
    if (t.sampler && samplerBefore) t.sampler.setState(samplerBefore);
    throw err;
  }
  return ckpt.step;
}

/** SHA-256 over the structure, the numbers and every tensor's bytes, in order. */
function digest(v: CheckpointValue): string {
  const h = new Sha256();
  feed(h, v);
  return h.hex();
}

function feed(h: Sha256, v: CheckpointValue): void {
  if (v === null || typeof v !== 'object') {
    h.update(`${typeof v}:${typeof v === 'number' && Object.is(v, -0) ? 0 : String(v)};`);
    return;
  }
  if (isRawTensor(v)) {
    h.update(`tensor:${v.dtype}:${v.shape.join(',')}:`);
    h.update(new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength));
    return;
  }
  if (Array.isArray(v)) {
    h.update(`[${v.length}:`);
    for (const x of v) feed(h, x);
    h.update(']');
    return;
  }
  const entries = Object.entries(v);
  h.update(`{${entries.length}:`);
  for (const [k, x] of entries) {
    h.update(`${JSON.stringify(k)}=`);
    feed(h, x);
  }
  h.update('}');
}
