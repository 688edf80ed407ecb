import { memory, resetPeak, tidy, zeros, type Tensor } from '@lowrank/core';
import {
  Module, PreTrainedModel, TransformerLM, createModel, preset, resolveConfig, type PresetName, type TransformerConfigInput,
} from '@lowrank/nn';
import { LoraConfig, type LoraConfigInput } from './config.ts';
import { PeftModel } from './peft-model.ts';
import { planTargets } from './tuner.ts';

/** One adapted layer: full fine-tuning updates in*out weights, LoRA r*(in+out). */
export interface SavingsRow {
  name: string;
  in: number;
  out: number;
  r: number;
  fullParams: number;
  loraParams: number;
  /** loraParams / fullParams. */
  ratio: number;
}

export interface SavingsTable {
  rows: SavingsRow[];
  totals: { fullParams: number; loraParams: number; ratio: number };
}

/**
 * Per targeted layer, the weights full fine-tuning would update versus LoRA's
 * A and B (the model is not modified; works on `meta` models).
 * @example renderSavingsTable(savingsTable(new TransformerLM(gpt2Small(), { backend: 'meta' }), { r: 8 }))
 */
export function savingsTable(model: Module, config: LoraConfig | LoraConfigInput): SavingsTable {
  const cfg = config instanceof LoraConfig ? config : new LoraConfig(config);
  const rows = planTargets(model, cfg).map((t): SavingsRow => {
    const fullParams = t.inFeatures * t.outFeatures;
    const loraParams = t.r * (t.inFeatures + t.outFeatures);
    return { name: t.name, in: t.inFeatures, out: t.outFeatures, r: t.r, fullParams, loraParams, ratio: loraParams / fullParams };
  });
  const fullParams = rows.reduce((s, r) => s + r.fullParams, 0);
  const loraParams = rows.reduce((s, r) => s + r.loraParams, 0);
  return { rows, totals: { fullParams, loraParams, ratio: loraParams / fullParams } };
}

const num = (n: number): string => n.toLocaleString('en-US');

function renderTable(header: string[], rows: string[][], alignLeft = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < alignLeft ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/**
 * Plain-text rendering of a savings table, one row per layer plus a total.
 * @example console.log(renderSavingsTable(savingsTable(model, { r: 8 })));
 */
export function renderSavingsTable(table: SavingsTable): string {
  const rows = table.rows.map((r) => [r.name, String(r.in), String(r.out), String(r.r), num(r.fullParams), num(r.loraParams), r.ratio.toFixed(4)]);
  rows.push(['total', '', '', '', num(table.totals.fullParams), num(table.totals.loraParams), table.totals.ratio.toFixed(4)]);
  return renderTable(['layer', 'in', 'out', 'r', 'full params', 'LoRA params', 'ratio'], rows);
}

/** Fine-tuning regime and workload of a memory estimate. */
export interface MemoryEstimateOptions {
  mode: 'full' | 'lora';
  optimizer?: 'adamw';
  batch: number;
  seq: number;
}

/** Bytes of float32 training state (activations: peak of one forward + loss on `meta`). */
export interface MemoryEstimate {
  mode: 'full' | 'lora';
  batch: number;
  seq: number;
  totalParams: number;
  trainableParams: number;
  weights: number;
  gradients: number;
  optimizerState: number;
  activations: number;
  total: number;
}

/**
 * Estimates training memory for full fine-tuning or LoRA. The model is built
 * on the `meta` backend (shapes only), LoRA is applied there, and one forward
 * pass with loss over `[batch, seq]` ids sizes the activations (the peak of
 * meta bytes it allocates). Weights 4 B/param, gradients 4 B/trainable param,
 * AdamW state (m, v) 8 B/trainable param.
 * @example estimateMemory('llama-7b', { r: 8 }, { mode: 'lora', batch: 1, seq: 512 })
 */
export function estimateMemory(
  model: TransformerLM | PreTrainedModel | TransformerConfigInput | PresetName,
  loraConfig: LoraConfig | LoraConfigInput | null,
  opts: MemoryEstimateOptions,
): MemoryEstimate {
  const { mode, batch, seq } = opts;
  if ((opts.optimizer ?? 'adamw') !== 'adamw') throw new Error(`estimateMemory: optimizer must be 'adamw', got '${opts.optimizer}'`);
  if (mode !== 'full' && mode !== 'lora') throw new Error(`estimateMemory: mode must be 'full' or 'lora', got '${String(mode)}'`);
  if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`estimateMemory: batch must be a positive integer, got ${batch}`);
  if (mode === 'lora' && !loraConfig) throw new Error("estimateMemory: mode 'lora' needs a LoRA config");
  // A Hugging Face architecture is rebuilt from its config on meta; TransformerLM configs as before.
  let meta: Module & { forward(ids: Tensor, opts: { targets: Tensor }): unknown };
  let maxSeq: number;
  if (model instanceof PreTrainedModel) {
    meta = createModel(model.config, { backend: 'meta' });
    maxSeq = model.maxPositions;
  } else {
    const config = typeof model === 'string' ? preset(model) : resolveConfig(model instanceof TransformerLM ? model.config : model);
    meta = new TransformerLM(config, { backend: 'meta' });
    maxSeq = config.blockSize;
  }
  if (!(Number.isInteger(seq) && seq >= 1 && seq <= maxSeq)) {
    for (const p of meta.parameters()) p.dispose();
    throw new Error(`estimateMemory: seq must be an integer in [1, ${maxSeq}] (the model's positions), got ${seq}`);
  }
  const net: Module = mode === 'lora' ? new PeftModel(meta, loraConfig!) : meta;
  let trainableParams = 0;
  let totalParams = 0;
  for (const p of net.parameters()) {
    totalParams += p.size;
    if (p.requiresGrad) trainableParams += p.size;
  }
  const activations = tidy(() => {
    const ids = zeros([batch, seq], { dtype: 'int32', backend: 'meta' });
    const targets = zeros([batch, seq], { dtype: 'int32', backend: 'meta' });
    resetPeak('meta');
    const before = memory('meta').liveBytes;
    meta.forward(ids, { targets });
    return memory('meta').peakBytes - before;
  });
  for (const p of net.parameters()) p.dispose();
  const weights = totalParams * 4;
  const gradients = trainableParams * 4;
  const optimizerState = trainableParams * 8;
  return {
    mode, batch, seq, totalParams, trainableParams, weights, gradients, optimizerState, activations,
    total: weights + gradients + optimizerState + activations,
  };
}

/**
 * Human-readable bytes (binary units). @example formatBytes(1536) // '1.50 KiB'
 */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(2)} ${units[u]}`;
}

/**
 * A side-by-side table of estimates (one column each), e.g. full vs LoRA.
 * @example console.log(renderMemoryTable([full, lora]));
 */
export function renderMemoryTable(estimates: readonly MemoryEstimate[]): string {
  const header = ['', ...estimates.map((e) => `${e.mode} (batch ${e.batch}, seq ${e.seq})`)];
  const row = (label: string, f: (e: MemoryEstimate) => string): string[] => [label, ...estimates.map(f)];
  const rows = [
    row('trainable params', (e) => num(e.trainableParams)),
    row('all params', (e) => num(e.totalParams)),
    row('weights', (e) => formatBytes(e.weights)),
    row('gradients', (e) => formatBytes(e.gradients)),
    row('optimizer (AdamW m, v)', (e) => formatBytes(e.optimizerState)),
    row('activations', (e) => formatBytes(e.activations)),
    row('total', (e) => formatBytes(e.total)),
  ];
  return renderTable(header, rows);
}
