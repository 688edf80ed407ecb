/**
 * Where the time of one W2 training step goes: every kernel the step
 * launches, timed by profileKernels, summed by kernel name; full
 * fine-tuning and LoRA, after warm-up steps, median over --steps profiled steps.
 *
 *   npm run bench -- profile [--steps 3] [--warmup 2] [--threads N] [--modes full,lora]
 */
import { loadavg } from 'node:os';
import { getNumThreads, manualSeed, profileKernels, tensor, tidy, type KernelRecord } from '@lowrank/core';
import { AdamW, TransformerLM, w2 } from '@lowrank/nn';
import { getPeftModel } from '@lowrank/lora';
import { ADAMW, LORA, applyThreads, formatTable, intOption, median, option } from './common.ts';

function randomBatch(vocab: number, batch: number, block: number, seed: number): { x: number[]; y: number[] } {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  };
  return { x: Array.from({ length: batch * block }, next), y: Array.from({ length: batch * block }, next) };
}

/** Per kernel name: calls and ms per step (median over the profiled steps). */
function summarize(steps: KernelRecord[][]): { kernel: string; calls: number; ms: number }[] {
  const names = [...new Set(steps.flat().map((r) => r.kernel))];
  return names.map((kernel) => {
    const per = steps.map((log) => log.filter((r) => r.kernel === kernel));
    return { kernel, calls: per[0].length, ms: median(per.map((rs) => rs.reduce((t, r) => t + (r.ms ?? 0), 0))) };
  }).sort((a, b) => b.ms - a.ms);
}

function profileMode(mode: 'full' | 'lora', steps: number, warmup: number): { kernel: string; calls: number; ms: number }[] {
  manualSeed(0);
  const config = w2(65);
  const batch = 16;
  const model = new TransformerLM(config);
  const peft = mode === 'lora' ? getPeftModel(model, { r: LORA.r, loraAlpha: LORA.alpha, targetModules: [...LORA.targets] }) : null;
  const trainable = model.parameters().filter((p) => p.requiresGrad);
  const opt = new AdamW(trainable, { lr: ADAMW.lr, weightDecay: ADAMW.weightDecay });
  const net = peft ?? model;
  const one = (i: number): void => tidy(() => {
    const b = randomBatch(config.vocabSize, batch, config.blockSize, i + 1);
    const x = tensor(b.x, { shape: [batch, config.blockSize], dtype: 'int32' });
    const y = tensor(b.y, { shape: [batch, config.blockSize], dtype: 'int32' });
    opt.zeroGrad();
    const { loss } = net.forward(x, { targets: y });
    loss!.backward();
    opt.step();
    loss!.item();
  });
  for (let i = 0; i < warmup; i++) one(i);
  const logs: KernelRecord[][] = [];
  for (let i = 0; i < steps; i++) logs.push(profileKernels(() => one(warmup + i)));
  return summarize(logs);
}

export function run(args: string[]): void {
  applyThreads(args);
  const steps = intOption(args, 'steps', 3);
  const warmup = intOption(args, 'warmup', 2, 0);
  const modes = (option(args, 'modes') ?? 'full,lora').split(',').filter((m): m is 'full' | 'lora' => m === 'full' || m === 'lora');
  for (const mode of modes) {
    const load = loadavg()[0].toFixed(2);
    const rows = profileMode(mode, steps, warmup);
    const total = rows.reduce((t, r) => t + r.ms, 0);
    console.log(`\nW2 ${mode} step on cpu, ${getNumThreads()} thread(s): kernel time ${total.toFixed(1)} ms per step ` +
      `(median of ${steps} profiled steps after ${warmup} warm-up; load ${load})`);
    console.log(formatTable(['kernel', 'calls/step', 'ms/step', 'share'], rows.map((r) => [
      r.kernel, String(r.calls), r.ms.toFixed(2), `${((100 * r.ms) / total).toFixed(1)}%`,
    ])));
  }
}
