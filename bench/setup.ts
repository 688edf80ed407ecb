/**
 * What every fine-tuning suite starts with: Brown split by genre, written as
 * token files for the workers, and the pre-trained base (cached).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { getBackend } from '@lowrank/core';
import { join } from 'node:path';
import { brownGenreSplit, writeTokens, type GenreSplit } from './corpus.ts';
import { workload, type SizeName } from './common.ts';
import { pretrainData, type PretrainInfo, type PretrainSpec } from './pretrain.ts';
import { ensureBase } from './workers.ts';

export interface FinetuneOptions {
  size: SizeName;
  backend: string;
  seed: number;
  /** Held-out Brown genre prefix. */
  genre: string;
  /** Keep only the first files of each split (tests). */
  brownFiles?: number;
  pretrainSteps: number;
  pretrainLr: number;
  cacheDir: string;
}

export interface FinetuneSetup {
  split: GenreSplit;
  files: { pretrain: string; train: string; val: string };
  spec: PretrainSpec;
  base: { ckpt: string; info: PretrainInfo; cached: boolean };
  /** Removes the token files. */
  close(): void;
}

export async function prepareFinetune(o: FinetuneOptions, say: (s: string) => void): Promise<FinetuneSetup> {
  const split = brownGenreSplit(o.genre, o.brownFiles);
  const tmp = mkdtempSync(join(tmpdir(), 'lowrank-bench-data-'));
  const files = { pretrain: join(tmp, 'pretrain.bin'), train: join(tmp, 'train.bin'), val: join(tmp, 'val.bin') };
  const close = (): void => rmSync(tmp, { recursive: true, force: true });
  try {
    writeTokens(files.pretrain, split.pretrain);
    writeTokens(files.train, split.train);
    writeTokens(files.val, split.val);
    say(`      pre-train: ${split.pretrain.source}`);
    say(`      fine-tune: ${split.train.source}; validate: ${split.val.source}`);
    const w = workload(o.size, split.vocabSize);
    const spec: PretrainSpec = {
      size: o.size, config: w.config, batchSize: w.batchSize, seed: o.seed, steps: o.pretrainSteps, lr: o.pretrainLr,
      data: pretrainData(split.pretrain.source, split.pretrain.ids.length),
    };
    const base = await ensureBase(spec, files.pretrain, o.backend, o.cacheDir, say);
    say(`      base ${base.info.key} (${base.cached ? 'cached' : 'built now'}): pre-trained ${spec.steps} steps in ` +
      `${base.info.seconds.toFixed(0)} s, train loss ${base.info.lossStart.toFixed(3)} -> ${base.info.lossEnd.toFixed(3)}`);
    return { split, files, spec, base, close };
  } catch (e) {
    close();
    throw e;
  }
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  node: string;
  platform: string;
  /** Compute threads the backend uses (1 unless the backend reports more). */
  threads: number;
  loadavgStart: number[];
  loadavg: number[];
}

/** Threads the backend computes with: its own `threads` when it has one, else 1 (one JS thread). */
export function threadsOf(backend: string): number {
  const t = (getBackend(backend) as { threads?: unknown }).threads;
  return typeof t === 'number' && t >= 1 ? t : 1;
}

export function machineInfo(backend: string, loadavgStart: number[]): MachineInfo {
  const c = cpus();
  return {
    cpus: c.length, cpuModel: c[0]?.model.trim() ?? 'unknown', node: process.version, platform: `${process.platform}-${process.arch}`,
    threads: threadsOf(backend), loadavgStart, loadavg: loadavg(),
  };
}

/** `load 1.02 0.98 0.75 at the start, ... at the end (2 CPUs, 1 thread)`. */
export function loadLine(m: MachineInfo): string {
  const f = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' ');
  return `load average ${f(m.loadavgStart)} at the start, ${f(m.loadavg)} at the end (1, 5, 15 min; ${m.cpus} CPUs; ${m.threads} compute thread${m.threads === 1 ? '' : 's'})`;
}
