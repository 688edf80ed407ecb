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
