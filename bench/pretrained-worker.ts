/**
 * One measurement of `npm run bench -- pretrained` in a fresh process (so peak RSS is its own):
 *
 *   node --import tsx bench/pretrained-worker.ts --dir <model dir> --mode load|lora|full
 *        [--dtype float32] [--batch 4] [--seq 128] [--steps 3] [--warmup 1] [--seed 0]
 *
 * Prints progress on stderr and one `RESULT <json>` line on stdout.
 */
import { pathToFileURL } from 'node:url';
import { manualSeed, memory } from '@lowrank/core';
import { AdamW, AutoModelForCausalLM, trainStep, type Batch, type LossModel } from '@lowrank/nn';
import '@lowrank/nn/node';
import { getPeftModel } from '@lowrank/lora';
import { intOption, median, option } from './common.ts';
import { RESULT_PREFIX } from './protocol.ts';

export interface PretrainedLoadResult {
  kind: 'load';
  dtype: string;
  loadMs: number;
  parameters: number;
  rssBeforeBytes: number;
  peakRssBytes: number;
  liveTensorBytes: number;
}

export interface PretrainedStepResult {
  kind: 'step';
  mode: 'lora' | 'full';
  dtype: string;
  batch: number;
  seq: number;
  warmup: number;
  stepMs: number[];
  medianMs: number;
  trainableParams: number;
  totalParams: number;
  peakRssBytes: number;
  peakTensorBytes: number;
  lossFirst: number;
  lossLast: number;
}

export type PretrainedResult = PretrainedLoadResult | PretrainedStepResult;

const log = (msg: string) => process.stderr.write(`[pretrained] ${msg}\n`);

async function load(dir: string, dtype: string | undefined, train: boolean) {
  const t0 = performance.now();
  const model = await AutoModelForCausalLM.fromPretrained(dir, { train, ...(dtype !== undefined && { dtype: dtype as 'float32' }) });
  return { model, ms: performance.now() - t0 };
}

function randomBatch(batch: number, seq: number, vocab: number, seed: number): Batch {
  let s = seed * 2654435761 + 1;
  const next = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s % vocab;
  };
  const x = Int32Array.from({ length: batch * seq }, next);
  const y = Int32Array.from({ length: batch * seq }, next);
  return { x, y, shape: [batch, seq] } as Batch;
}

export async function measure(args: readonly string[]): Promise<PretrainedResult> {
  const dir = option(args, 'dir');
  if (!dir) throw new Error('pretrained-worker: --dir <model dir> is required');
  const mode = option(args, 'mode') ?? 'load';
  const dtype = option(args, 'dtype');
  manualSeed(intOption(args, 'seed', 0, 0));
  if (mode === 'load') {
    const rssBeforeBytes = process.memoryUsage().rss;
    const { model, ms } = await load(dir, dtype, false);
    const parameters = model.parameters().reduce((n, p) => n + p.size, 0);
    log(`loaded ${parameters.toLocaleString('en-US')} parameters in ${ms.toFixed(0)} ms`);
    return {
      kind: 'load', dtype: dtype ?? 'default', loadMs: ms, parameters, rssBeforeBytes,
      peakRssBytes: process.resourceUsage().maxRSS * 1024, liveTensorBytes: memory().liveBytes,
    };
  }
  if (mode !== 'lora' && mode !== 'full') throw new Error(`pretrained-worker: --mode must be load, lora or full, got '${mode}'`);
  const batch = intOption(args, 'batch', 4);
  const seq = intOption(args, 'seq', 128);
  const steps = intOption(args, 'steps', 3);
  const warmup = intOption(args, 'warmup', 1, 0);
  const { model } = await load(dir, dtype, true);
  const net = (mode === 'lora' ? getPeftModel(model, { r: 8, loraAlpha: 16, targetModules: ['c_attn'] }) : model) as unknown as LossModel;
  const params = net.parameters();
  const trainable = params.filter((p) => p.requiresGrad);
  const optimizer = new AdamW(trainable, { lr: 1e-4, weightDecay: 0 });
  const stepMs: number[] = [];
  const losses: number[] = [];
  let peakTensorBytes = 0;
  for (let i = 0; i < warmup + steps; i++) {
    const b = randomBatch(batch, seq, model.vocabSize, i);
    const t0 = performance.now();
    const { loss } = trainStep(net, optimizer, b);
    const ms = performance.now() - t0;
    losses.push(loss);
    peakTensorBytes = Math.max(peakTensorBytes, memory().peakBytes);
    if (i >= warmup) stepMs.push(ms);
    log(`${mode} step ${i + 1}/${warmup + steps}${i < warmup ? ' (warm-up)' : ''}: ${ms.toFixed(0)} ms, loss ${loss.toFixed(4)}`);
  }
  return {
    kind: 'step', mode, dtype: dtype ?? 'default', batch, seq, warmup, stepMs, medianMs: median(stepMs),
    trainableParams: trainable.reduce((n, p) => n + p.size, 0), totalParams: params.reduce((n, p) => n + p.size, 0),
    peakRssBytes: process.resourceUsage().maxRSS * 1024, peakTensorBytes, lossFirst: losses[0], lossLast: losses[losses.length - 1],
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const result = await measure(process.argv.slice(2));
    process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
  } catch (err) {
    process.stderr.write(`pretrained-worker: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
