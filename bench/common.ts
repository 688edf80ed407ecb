/**
 * Shared pieces of the LoRA-vs-full benchmark: argument parsing, model sizes,
 * statistics and number formatting. No timing or engine state lives here.
 */
import { GpuBackend, getBackend, getNumThreads, setNumThreads, type Backend } from '@lowrank/core';
import { w2, type TransformerConfig } from '@lowrank/nn';

/** `--name value` or `--name=value`; undefined when absent. */
export function option(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

/** A bare `--name` switch. */
export function flag(args: readonly string[], name: string): boolean {
  return args.includes(`--${name}`);
}

/** A positive integer option, with a clear error for anything else. */
export function intOption(args: readonly string[], name: string, fallback: number, min = 1): number {
  const raw = option(args, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`bench: --${name} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

/** Model sizes the bench knows. `tiny` is for the harness test only (seconds, not meaningful numbers). */
export const SIZES = ['w2', 'medium', 'large', 'gpt2', 'tiny'] as const;
export type SizeName = (typeof SIZES)[number];

export function parseSize(raw: string | undefined): SizeName {
  const s = raw ?? 'w2';
  if (!(SIZES as readonly string[]).includes(s)) throw new Error(`bench: --size must be one of w2, medium, large, gpt2, got '${s}'`);
  return s as SizeName;
}

/** The workload: model config plus batch shape. */
export interface Workload {
  size: SizeName;
  config: TransformerConfig;
  batchSize: number;
}

/**
 * W2 and its larger siblings. All are GPT flavour, 4x MLP, tied head, dropout 0,
 * block 64, batch 16; medium and large use 64-wide heads (4 and 8 heads).
 */
export function workload(size: SizeName, vocabSize: number): Workload {
  const base = w2(vocabSize);
  switch (size) {
    case 'w2':
      return { size, config: base, batchSize: 16 };
    case 'medium':
      return { size, config: { ...base, nLayer: 8, nEmbd: 256, nHead: 4, headDim: 64, intermediateSize: 1024 }, batchSize: 16 };
    case 'large':
      return { size, config: { ...base, nLayer: 12, nEmbd: 512, nHead: 8, headDim: 64, intermediateSize: 2048 }, batchSize: 16 };
    case 'gpt2':
      // GPT-2 small's shape (124M parameters with --vocab 50257), batch 2: where the weights, not the activations, dominate.
      return { size, config: { ...base, nLayer: 12, nEmbd: 768, nHead: 12, headDim: 64, intermediateSize: 3072 }, batchSize: 2 };
    case 'tiny':
      return { size, config: { ...base, blockSize: 16, nLayer: 2, nEmbd: 32, nHead: 2, headDim: 16, intermediateSize: 128 }, batchSize: 4 };
  }
}

export function describeWorkload(w: Workload): string {
  const c = w.config;
  return `${w.size}: ${c.flavour}, vocab ${c.vocabSize} (chars), block ${c.blockSize}, ${c.nLayer} layers, ${c.nHead} heads, ` +
    `n_embd ${c.nEmbd}, MLP ${c.intermediateSize / c.nEmbd}x, dropout ${c.dropout}, ${c.tieWordEmbeddings ? 'tied' : 'untied'} head; ` +
    `batch ${w.batchSize} x ${c.blockSize}`;
}

/** LoRA hyperparameters of the bench (PEFT's usual small setting). */
export const LORA = { r: 8, alpha: 16, targets: ['q_proj', 'v_proj'] } as const;

/** AdamW hyperparameters of the bench. */
export const ADAMW = { lr: 3e-4, weightDecay: 0.01 } as const;

/** Numeric precision a backend computes in. */
export function precisionOf(b: Backend): string {
  if (b.mode === 'cpu-float64') return 'float64';
  const p = (b as Backend & { precision?: unknown }).precision;
  if (typeof p === 'string') return p;
  return b instanceof GpuBackend ? 'single' : 'float32'; // gpu.js kernels run with precision: 'single'
}

/** Backend name, gpu.js mode (or the backend's own mode) and precision, as every row records them. */
export function backendInfo(name: string): { backend: string; mode: string; precision: string; threads: number } {
  const b = getBackend(name);
  return { backend: name, mode: b.mode, precision: precisionOf(b), threads: b.mode === 'cpu' ? getNumThreads() : 1 };
}

/**
 * `--threads N`: the cpu backend's thread count, here and (through
 * LOWRANK_NUM_THREADS) in every worker process started afterwards.
 */
export function applyThreads(args: readonly string[]): void {
  if (option(args, 'threads') === undefined) return;
  const n = intOption(args, 'threads', 1);
  setNumThreads(n);
  process.env.LOWRANK_NUM_THREADS = String(n);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function stats(xs: readonly number[]): Stats {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** 1234567 -> '1,234,567'. */
export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

/** Bytes in binary units: '1.50 MiB'. */
export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}

/** Milliseconds with sensible digits. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3) : 'n/a';
}

/** A plain-text table: first column left-aligned, the rest right-aligned unless listed in `left`. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], left: readonly number[] = [0]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (c: readonly string[]): string =>
    c.map((v, i) => (left.includes(i) ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
