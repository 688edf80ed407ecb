/**
 * What a 16-bit base saves: a LoRA step on a float32 base, on a bfloat16 base,
 * and full fine-tuning, each in a fresh worker process, side by side:
 * engine tensor bytes and the process's resident set.
 *
 *   npm run bench -- memory [--size gpt2] [--vocab 50257] [--dtype bfloat16] [--steps 2] [--warmup 1]
 *
 * "step RSS" is the largest resident set sampled after each timed forward
 * pass; "max RSS" is the process high-water mark. For the 16-bit base both
 * still include the float32 weights the model was built from: the bench
 * builds a random model, then converts it, and the cpu backend's shared
 * memory never shrinks (its freed blocks are reused for activations). A load
 * with `fromPretrained(..., { dtype })` never holds them: see
 * `npm run bench -- pretrained --dtype bfloat16` for that footprint.
 */
import { loadavg } from 'node:os';
import { applyThreads, fmtBytes, fmtRatio, formatTable, intOption, option, parseSize } from './common.ts';
import { runWorker } from './lora-suite.ts';
import type { TrainResult } from './protocol.ts';

export async function run(args: string[]): Promise<void> {
  applyThreads(args);
  const size = parseSize(option(args, 'size') ?? 'gpt2');
  const vocab = String(intOption(args, 'vocab', 50257));
  const dtype = option(args, 'dtype') ?? 'bfloat16';
  const steps = String(intOption(args, 'steps', 2));
  const warmup = String(intOption(args, 'warmup', 1, 0));
  const common = ['--size', size, '--vocab', vocab, '--steps', steps, '--warmup', warmup, '--backend', 'cpu'];
  console.log(`memory: LoRA on a float32 base vs a ${dtype} base vs full fine-tuning, size ${size}, vocab ${vocab}; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const cases: [string, string[]][] = [
    ['LoRA, float32 base', ['--mode', 'lora']],
    [`LoRA, ${dtype} base`, ['--mode', 'lora', '--dtype', dtype]],
    ['full fine-tuning', ['--mode', 'full']],
  ];
  const results: [string, TrainResult][] = [];
  for (const [label, extra] of cases) {
    process.stderr.write(`  ${label}...\n`);
    const r = await runWorker([...extra, ...common], label);
    if (r.kind !== 'train') throw new Error(`memory: ${label} returned no training result`);
    results.push([label, r]);
  }
  const [, f32] = results[0];
  const [, half] = results[1];
  const [, full] = results[2];
  console.log(formatTable(
    ['run', 'weights', 'peak tensors', 'step RSS', 'max RSS', 'median step ms'],
    results.map(([label, r]) => [
      label, fmtBytes(r.weightBytes), fmtBytes(r.peakTensorBytes), fmtBytes(r.stepRssBytes), fmtBytes(r.peakRssBytes),
      r.medianMs === null ? 'n/a' : r.medianMs.toFixed(0),
    ]),
  ));
  console.log(`${dtype} base / float32 base: step RSS ${fmtRatio(half.stepRssBytes / f32.stepRssBytes)}, ` +
    `peak tensors ${fmtRatio(half.peakTensorBytes / f32.peakTensorBytes)} (target <= 0.6x)`);
  console.log(`${dtype} base / full fine-tuning: step RSS ${fmtRatio(half.stepRssBytes / full.stepRssBytes)}, ` +
    `peak tensors ${fmtRatio(half.peakTensorBytes / full.peakTensorBytes)} (target <= 0.35x)`);
  console.log(`load after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
}
