/**
 * The pre-trained base every fine-tuning comparison starts from: the bench
 * model trained on 14 Brown genres (the 15th is held out for fine-tuning),
 * cached under bench/.cache/ by a key of everything that shapes it (config,
 * seed, steps, learning rate, data), and rebuilt in a worker when missing.
 * Also the fixed-window validation loss both modes are judged by.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getBackend, manualSeed, tensor, tidy } from '@lowrank/core';
import { writeFileAtomic } from '@lowrank/core/node';
import {
  AdamW, BatchSampler, LambdaLR, TransformerLM, cosineWithWarmup, evaluate, restoreCheckpoint,
  type Batch, type BatchSource, type LossModel, type TransformerConfig,
} from '@lowrank/nn';
import { loadCheckpoint, saveCheckpoint } from '@lowrank/nn/node';
import { ADAMW, intOption, option, parseSize, workload } from './common.ts';
import { evalWindowStarts, readTokens } from './corpus.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
export const CACHE_DIR = join(HERE, '.cache');

/** How the base is pre-trained; every field is part of the cache key. */
export interface PretrainSpec {
  size: string;
  config: TransformerConfig;
  batchSize: number;
  seed: number;
  steps: number;
  lr: number;
  /** What the pre-training tokens are (source line and token count). */
  data: string;
}

/** What the cache holds beside the checkpoint (`<key>.json`). */
export interface PretrainInfo {
  spec: PretrainSpec;
  key: string;
  seconds: number;
  /** Mean training loss of the first and the last 10% of steps. */
  lossStart: number;
  lossEnd: number;
  createdAt: string;
}

/** Default pre-training: a few minutes of W2 on 2 cores (cosine schedule, 10% warm-up). */
export const PRETRAIN = { steps: 600, lr: 2e-3 } as const;

export function pretrainKey(spec: PretrainSpec): string {
  const h = createHash('sha256').update(JSON.stringify({ v: 1, ...spec })).digest('hex');
  return `${spec.size}-s${spec.seed}-${h.slice(0, 12)}`;
}

export function cachePaths(spec: PretrainSpec, dir = CACHE_DIR): { ckpt: string; info: string; key: string } {
  const key = pretrainKey(spec);
  return { ckpt: resolve(dir, `${key}.ckpt`), info: resolve(dir, `${key}.json`), key };
}

/** The cached base's info, or null when it is missing or unreadable (then it is rebuilt). */
export function cachedBase(spec: PretrainSpec, dir = CACHE_DIR): PretrainInfo | null {
  const p = cachePaths(spec, dir);
  if (!existsSync(p.ckpt) || !existsSync(p.info)) return null;
  try {
    const info = JSON.parse(readFileSync(p.info, 'utf8')) as PretrainInfo;
    return info.key === p.key ? info : null;
  } catch {
    return null;
  }
}

/** Fixed validation windows as a batch source for nn's `evaluate`: every call walks them in order. */
export function windowSource(ids: Int32Array, blockSize: number, batchSize: number, count: number): { source: BatchSource; batches: number } {
  const starts = evalWindowStarts(ids.length, blockSize, count);
  const batches: Batch[] = [];
  for (let i = 0; i < starts.length; i += batchSize) {
    const rows = starts.slice(i, i + batchSize);
    const x = new Int32Array(rows.length * blockSize);
    const y = new Int32Array(rows.length * blockSize);
    rows.forEach((o, b) => {
      x.set(ids.subarray(o, o + blockSize), b * blockSize);
      y.set(ids.subarray(o + 1, o + 1 + blockSize), b * blockSize);
    });
    batches.push({ x, y, shape: [rows.length, blockSize], offsets: Int32Array.from(rows) });
  }
  let next = 0;
  return { source: { next: () => batches[next++ % batches.length] }, batches: batches.length };
}

/** Mean cross-entropy over the fixed windows (eval mode, no graph). Window counts divisible by the batch size weigh every window alike. */
export function validationLoss(model: LossModel, ids: Int32Array, blockSize: number, batchSize: number, count: number, backend: string): number {
  const { source, batches } = windowSource(ids, blockSize, batchSize, count);
  return evaluate(model, source, batches, backend);
}

/** Loads the cached base weights into `model` (strict: every key and shape must match). */
export async function loadBase(model: TransformerLM, ckptPath: string): Promise<void> {
  restoreCheckpoint(await loadCheckpoint(ckptPath), { model, rng: false });
}

/**
 * Worker side: pre-trains the model of `--size` on `--data` for `--steps`
 * (AdamW, cosine with 10% warm-up, peak `--lr`) and writes `--out` (the
 * checkpoint) and `--info` atomically. The spec is rebuilt from the same args.
 */
export async function pretrainRun(args: readonly string[], progress: (msg: string) => void): Promise<PretrainInfo> {
  const backend = option(args, 'backend') ?? 'cpu';
  if (!getBackend(backend).hasStorage) throw new Error(`pretrain: backend '${backend}' computes nothing; pre-train on cpu or gpu`);
  const out = option(args, 'out');
  const infoPath = option(args, 'info');
  const data = option(args, 'data');
  if (!out || !infoPath || !data) throw new Error('pretrain: --out, --info and --data are required');
  const tokens = readTokens(data);
  const w = workload(parseSize(option(args, 'size')), tokens.vocabSize);
  const spec: PretrainSpec = {
    size: w.size, config: w.config, batchSize: w.batchSize, seed: intOption(args, 'seed', 0, 0),
    steps: intOption(args, 'steps', PRETRAIN.steps), lr: Number(option(args, 'lr') ?? PRETRAIN.lr), data: pretrainData(tokens.source, tokens.ids.length),
  };
  const t0 = performance.now();
  manualSeed(spec.seed);
  const model = new TransformerLM(w.config, { backend });
  model.train();
  const opt = new AdamW(model.parameters(), { lr: spec.lr, weightDecay: ADAMW.weightDecay });
  const sched = new LambdaLR(opt, cosineWithWarmup({ warmupSteps: Math.max(1, Math.round(spec.steps / 10)), totalSteps: spec.steps, minRatio: 0.1 }));
  const sampler = new BatchSampler(tokens.ids, { batchSize: w.batchSize, blockSize: w.config.blockSize, seed: spec.seed + 7 });
  const losses: number[] = [];
  for (let i = 0; i < spec.steps; i++) {
    const b = sampler.next();
    const loss = tidy(() => {
      const shape = [...b.shape];
      const x = tensor(b.x, { shape, dtype: 'int32', backend });
      const y = tensor(b.y, { shape, dtype: 'int32', backend });
      opt.zeroGrad();
      const l = model.forward(x, { targets: y }).loss!;
      l.backward();
      opt.step();
      return l.item();
    });
    sched.step();
    losses.push(loss);
    if ((i + 1) % 50 === 0 || i + 1 === spec.steps) {
      progress(`pre-train step ${i + 1}/${spec.steps}: loss ${loss.toFixed(3)}, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
  }
  const tenth = Math.max(1, Math.round(spec.steps / 10));
  const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
  const key = pretrainKey(spec);
  const info: PretrainInfo = {
    spec, key, seconds: (performance.now() - t0) / 1000, lossStart: mean(losses.slice(0, tenth)), lossEnd: mean(losses.slice(-tenth)),
    createdAt: new Date().toISOString(),
  };
  mkdirSync(dirname(out), { recursive: true });
  await saveCheckpoint(out, { model, step: spec.steps, extra: { key } });
  await writeFileAtomic(infoPath, new TextEncoder().encode(`${JSON.stringify(info, null, 2)}\n`)); // written last: its presence means the checkpoint is whole
  for (const p of model.parameters()) p.dispose();
  return info;
}

/** The data line of the cache key: the source and its token count. */
export function pretrainData(source: string, tokens: number): string {
  return `${source} [${tokens} tokens]`;
}
