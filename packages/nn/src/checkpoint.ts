import { createHash, type Hash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  decodeCheckpoint, encodeCheckpoint, globalRng, isRawTensor, writeFileAtomic, type CheckpointValue, type RawTensor,
} from '@lowrank/core';
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
 * Writes a checkpoint atomically (temp file, fsync, rename): model, optimizer,
 * scheduler, step, core RNG and sampler state, with a SHA-256 of the contents.
 * @example await saveCheckpoint('run/ckpt.msgpack', { model, optimizer, step, sampler });
 */
export async function saveCheckpoint(path: string, s: CheckpointInput): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(checkpointValue(s)));
}

/**
 * Reads and verifies a checkpoint; truncated or corrupted files are rejected with a clear Error.
 * @example const ckpt = await loadCheckpoint('run/ckpt.msgpack'); restoreCheckpoint(ckpt, { model, optimizer, sampler });
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const bytes = await readFile(path);
  try {
    return parseCheckpoint(bytes);
  } catch (err) {
    throw new Error(`loadCheckpoint: '${path}' is not a valid checkpoint: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Decodes and verifies checkpoint bytes. @example parseCheckpoint(encodeCheckpoint(checkpointValue(s))) */
export function parseCheckpoint(bytes: Uint8Array): Checkpoint {
  const v = decodeCheckpoint(bytes);
  if (typeof v !== 'object' || v === null || Array.isArray(v) || isRawTensor(v)) throw new Error('expected a map at the top level');
  const o = v as { [key: string]: CheckpointValue };
  if (o.kind !== KIND) throw new Error(`kind is ${JSON.stringify(o.kind)}, expected '${KIND}'`);
  const { sha256, ...body } = o;
  if (typeof sha256 !== 'string' || digest(body) !== sha256) {
    throw new Error('checksum mismatch: the file is corrupted (SHA-256 of its contents differs from the stored one)');
  }
  if (typeof o.step !== 'number' || !Array.isArray(o.rng)) throw new Error('missing step or rng state');
  return {
    step: o.step,
    model: o.model as unknown as Record<string, RawTensor>,
    optimizer: o.optimizer as unknown as OptimizerStateDict | null,
    scheduler: o.scheduler as unknown as Checkpoint['scheduler'],
    rng: o.rng as number[],
    sampler: (o.sampler as number[] | null) ?? null,
    extra: o.extra ?? null,
  };
}

/**
 * Loads a checkpoint into the model (strict), optimizer, scheduler, sampler and core RNG; returns its step.
 * @example const step = restoreCheckpoint(await loadCheckpoint(path), { model, optimizer, sampler });
 */
export function restoreCheckpoint(ckpt: Checkpoint, t: RestoreTargets): number {
  const sd: Record<string, RawTensor> = { ...ckpt.model };
  // Tied weights are saved once: fill their other keys from the first one.
  const firstKey = new Map(t.model.namedParameters().map(([k, p]) => [p, k]));
  for (const [k, p] of Object.entries(t.model.stateDict())) {
    const canonical = firstKey.get(p);
    if (!(k in sd) && canonical !== undefined && canonical in sd) sd[k] = sd[canonical];
  }
  t.model.loadStateDict(sd);
  if (t.optimizer) {
    if (!ckpt.optimizer) throw new Error('restoreCheckpoint: the checkpoint holds no optimizer state');
    t.optimizer.loadStateDict(ckpt.optimizer);
  }
  if (t.scheduler && ckpt.scheduler) t.scheduler.loadStateDict(ckpt.scheduler);
  if (t.sampler) {
    if (!ckpt.sampler) throw new Error('restoreCheckpoint: the checkpoint holds no sampler state');
    t.sampler.setState(ckpt.sampler);
  }
  if (t.rng ?? true) globalRng.setState(ckpt.rng);
  return ckpt.step;
}

/** SHA-256 over the structure, the numbers and every tensor's bytes, in order. */
function digest(v: CheckpointValue): string {
  const h = createHash('sha256');
  feed(h, v);
  return h.digest('hex');
}

function feed(h: Hash, v: CheckpointValue): void {
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
