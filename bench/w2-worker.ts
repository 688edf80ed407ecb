/**
 * One bench measurement in a process of its own, so peak RSS, kernel caches
 * and the allocator start fresh for every mode. Prints progress on stderr and
 * exactly one `RESULT <json>` line on stdout.
 *
 *   node --import tsx bench/w2-worker.ts --mode full|lora|w3 [--size w2] [--backend cpu]
 *        [--steps 20] [--warmup 3] [--reps 50] [--seed 0] [--data ids.bin | --vocab 65]
 *        [--checkpointing]  (TransformerLM.gradientCheckpointingEnable(): recompute block activations in backward)
 *        [--init base.ckpt] (start from these weights: the pre-trained base)
 *        [--eval-data val.bin --eval-windows 64 --eval-every 0]  (fixed-window validation loss before, after, every k steps)
 *        [--lr 3e-4] (AdamW peak lr: 10% warm-up, cosine to 10%) [--r 8 --alpha 16 --targets q_proj,v_proj]  (LoRA settings)
 *   node --import tsx bench/w2-worker.ts --mode pretrain --data ids.bin --out base.ckpt --info base.json [--steps --lr --seed --size]
 *
 * Train modes time `warmup` untimed then `steps` timed training steps (each in
 * `tidy`: upload the batch, forward, backward, AdamW; the timed region ends by
 * reading the loss with `item()`). Validation runs outside the timed steps.
 * `w3` times eval forwards of 1 x block tokens; `pretrain` builds the cached base.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getBackend, manualSeed, memory, noGrad, resetPeak, tensor, tidy, type Tensor } from '@lowrank/core';
import { AdamW, BatchSampler, LambdaLR, TransformerLM, cosineWithWarmup, type Batch, type LossModel } from '@lowrank/nn';
import { saveCheckpoint } from '@lowrank/nn/node';
import {
  ADAMW, LORA, backendInfo, flag, intOption, median, option, parseSize, stats, workload, type Workload,
} from './common.ts';
import { loadBase, pretrainRun, validationLoss } from './pretrain.ts';
import { brownTokens, randomTokens, readTokens, type Tokens } from './corpus.ts';
import { blockLinearNames } from './theory.ts';
import {
  RESULT_PREFIX, type CurvePoint, type LatencyRow, type PretrainResult, type LatencyVariant, type LoraMode, type TrainMode, type TrainResult, type Trainee,
  type W3Result, type WorkerResult,
} from './protocol.ts';

async function loadLoraMode(): Promise<LoraMode> {
  return import('./lora-mode.ts');
}

function fullTrainee(model: TransformerLM): Trainee {
  return {
    model,
    trainable: model.parameters(),
    artifactKind: 'full-checkpoint',
    save: (dir) => saveCheckpoint(join(dir, 'model.ckpt'), { model, step: 0 }),
    lora: null,
  };
}

function tensorBytes(t: Tensor): number {
  return t.size * t.backend.bytesPerElement(t.dtype);
}

function filesUnder(dir: string, prefix = ''): { name: string; bytes: number }[] {
  const out: { name: string; bytes: number }[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesUnder(join(dir, e.name), rel));
    else out.push({ name: rel, bytes: statSync(join(dir, e.name)).size });
  }
  return out;
}

function log(tag: string, msg: string): void {
  process.stderr.write(`[${tag}] ${msg}\n`);
}

function tokensFrom(args: readonly string[]): Tokens {
  const data = option(args, 'data');
  if (data) return readTokens(data);
  const vocab = option(args, 'vocab');
  if (vocab) return randomTokens(Number(vocab));
  const files = option(args, 'brown-files');
  return brownTokens(files === undefined ? undefined : Number(files));
}

/** `--targets q_proj,v_proj`; `--targets all` is every block linear. */
export function loraSettings(args: readonly string[], all: readonly string[]): { r: number; alpha: number; targets: string[] } {
  const r = intOption(args, 'r', LORA.r);
  const alpha = Number(option(args, 'alpha') ?? (option(args, 'r') === undefined ? LORA.alpha : 2 * r));
  if (!(alpha > 0)) throw new Error(`w2-worker: --alpha must be a positive number, got '${option(args, 'alpha')}'`);
  const raw = option(args, 'targets');
  const targets = raw === undefined ? [...LORA.targets] : raw === 'all' ? [...all] : raw.split(',').filter((t) => t);
  if (targets.length === 0) throw new Error(`w2-worker: --targets names no linear ('${raw}')`);
  return { r, alpha, targets };
}

function lrOption(args: readonly string[]): number {
  const raw = option(args, 'lr');
  const lr = raw === undefined ? ADAMW.lr : Number(raw);
  if (!(lr > 0)) throw new Error(`w2-worker: --lr must be a positive number, got '${raw}'`);
  return lr;
}

function toTensors(b: Batch, backend: string): { x: Tensor; y: Tensor } {
  const shape = [...b.shape];
  return { x: tensor(b.x, { shape, dtype: 'int32', backend }), y: tensor(b.y, { shape, dtype: 'int32', backend }) };
}

export async function trainRun(
  mode: TrainMode, args: readonly string[], progress: (tag: string, msg: string) => void = log,
): Promise<TrainResult> {
  const backend = option(args, 'backend') ?? 'cpu';
  const info = backendInfo(backend);
  const hasValues = getBackend(backend).hasStorage;
  const steps = intOption(args, 'steps', hasValues ? 20 : 1);
  const warmup = intOption(args, 'warmup', hasValues ? 3 : 1, 0);
  const seed = intOption(args, 'seed', 0, 0);
  const tokens = tokensFrom(args);
  const w: Workload = workload(parseSize(option(args, 'size')), tokens.vocabSize);
  const tag = `${mode} ${w.size} ${backend}`;

  const lr = lrOption(args);
  const init = option(args, 'init');
  const evalPath = option(args, 'eval-data');
  const evalIds = evalPath ? readTokens(evalPath).ids : null;
  const evalWindows = intOption(args, 'eval-windows', 64);
  const evalEvery = intOption(args, 'eval-every', 0, 0);

  const baseline = memory(backend).liveBytes; // non-zero only when a process runs several measurements
  const t0 = performance.now();
  manualSeed(seed);
  const base = new TransformerLM(w.config, { backend });
  if (init) await loadBase(base, init);
  if (flag(args, 'checkpointing')) base.gradientCheckpointingEnable();
  const trainee = mode === 'full'
    ? fullTrainee(base)
    : await (await loadLoraMode()).loraTrainee(base, loraSettings(args, blockLinearNames(w.config)));
  const { model } = trainee;
  const baseDtype = option(args, 'dtype') ?? 'float32';
  if (baseDtype !== 'float32') {
    if (mode === 'full') throw new Error(`--dtype ${baseDtype}: 16-bit weights do not train; use it with --mode lora`);
    if (baseDtype !== 'bfloat16' && baseDtype !== 'float16') throw new Error(`--dtype must be float32, bfloat16 or float16, got '${baseDtype}'`);
    base.to({ dtype: baseDtype }); // the frozen weight matrices; the adapters stay float32
  }
  model.train();
  const opt = new AdamW(trainee.trainable, { lr, weightDecay: ADAMW.weightDecay });
  // 10% linear warm-up, then cosine to 10% of lr, over every step (warm-up steps included): a fresh AdamW on a trained base needs the ramp.
  const allSteps = warmup + steps;
  const sched = new LambdaLR(opt, cosineWithWarmup({ warmupSteps: Math.max(1, Math.round(allSteps / 10)), totalSteps: allSteps, minRatio: 0.1 }));
  const sampler = new BatchSampler(tokens.ids, { batchSize: w.batchSize, blockSize: w.config.blockSize, seed: seed + 1 });
  const buildMs = performance.now() - t0;

  let forwardLiveBytes = 0;
  let stepRssBytes = 0;
  const step = (b: Batch): number => tidy(() => {
    const { x, y } = toTensors(b, backend);
    opt.zeroGrad();
    const { loss } = model.forward(x, { targets: y });
    if (!loss) throw new Error('the model returned no loss');
    forwardLiveBytes = Math.max(forwardLiveBytes, memory(backend).liveBytes); // a counter read, no sync
    stepRssBytes = Math.max(stepRssBytes, process.memoryUsage.rss());
    loss.backward();
    opt.step();
    return hasValues ? loss.item() : NaN;
  });

  const validate = (): number | null => (evalIds && hasValues
    ? validationLoss(model, evalIds, w.config.blockSize, w.batchSize, evalWindows, backend)
    : null);
  const curve: CurvePoint[] = [];
  let trainMs = 0; // every training step, warm-up included: the wall time a user pays
  const point = (stepsDone: number): number | null => {
    const v = validate();
    if (v !== null) curve.push({ step: stepsDone, trainMs, valLoss: v });
    return v;
  };
  const valLossBefore = point(0);
  const losses: number[] = [];
  for (let i = 0; i < warmup; i++) {
    const b = sampler.next();
    const s = performance.now();
    losses.push(step(b));
    const ms = performance.now() - s;
    trainMs += ms;
    sched.step();
    progress(tag, `warm-up ${i + 1}/${warmup}: ${ms.toFixed(0)} ms, loss ${losses[losses.length - 1].toFixed(4)}`);
    if (evalEvery > 0 && (i + 1) % evalEvery === 0) point(i + 1);
  }
  const batches = Array.from({ length: steps }, () => sampler.next());
  forwardLiveBytes = 0;
  stepRssBytes = 0;
  resetPeak(backend);
  const before = memory(backend);
  let tensorsAfterFirst = 0;
  const times: number[] = [];
  const cpuTimes: number[] = [];
  for (let i = 0; i < steps; i++) {
    const cpu0 = process.cpuUsage();
    const s = performance.now();
    losses.push(step(batches[i])); // ends with loss.item(): a readback, so the step has finished
    const ms = performance.now() - s;
    const cpu = process.cpuUsage(cpu0);
    if (hasValues) {
      times.push(ms);
      cpuTimes.push((cpu.user + cpu.system) / 1000);
    }
    trainMs += ms;
    sched.step();
    if (i === 0) tensorsAfterFirst = memory(backend).liveTensors;
    progress(tag, `step ${i + 1}/${steps}: ${ms.toFixed(0)} ms, loss ${losses[losses.length - 1].toFixed(4)}`);
    const done = warmup + i + 1;
    if (evalEvery > 0 && done % evalEvery === 0 && i + 1 < steps) point(done);
  }
  const after = memory(backend);
  const valLossAfter = point(warmup + steps);
  if (valLossBefore !== null) progress(tag, `validation loss ${valLossBefore.toFixed(4)} -> ${valLossAfter?.toFixed(4)}`);

  const params = model.parameters();
  let total = 0;
  let trainable = 0;
  let weightBytes = 0;
  let gradientBytes = 0;
  let optimizerStateBytes = 0;
  for (const p of params) {
    total += p.size;
    weightBytes += tensorBytes(p);
    if (p.requiresGrad) trainable += p.size;
    if (p.grad) gradientBytes += tensorBytes(p.grad);
    for (const v of Object.values(opt.getState(p) ?? {})) if (typeof v !== 'number') optimizerStateBytes += tensorBytes(v);
  }

  const dir = mkdtempSync(join(tmpdir(), 'lowrank-bench-'));
  let files: { name: string; bytes: number }[] = [];
  try {
    if (hasValues) {
      await trainee.save(dir);
      files = filesUnder(dir);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  opt.zeroGrad();
  for (const p of params) {
    for (const v of Object.values(opt.getState(p) ?? {})) if (typeof v !== 'number') v.dispose();
    p.dispose();
  }

  const st = stats(times);
  const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);
  return {
    kind: 'train', trainMode: mode, ...info, size: w.size, config: w.config, batchSize: w.batchSize,
    tokensPerStep: w.batchSize * w.config.blockSize, data: tokens.source, lora: trainee.lora,
    warmup, steps, stepMs: times, cpuMs: cpuTimes, medianCpuMs: finite(median(cpuTimes)), medianMs: finite(st.median), minMs: finite(st.min), maxMs: finite(st.max),
    tokensPerSecond: finite((w.batchSize * w.config.blockSize) / (st.median / 1000)),
    trainableParams: trainable, totalParams: total, weightBytes, gradientBytes, optimizerStateBytes,
    liveBytesAfterStep: after.liveBytes - baseline, liveBytesAfterForward: forwardLiveBytes - baseline,
    peakTensorBytes: after.peakBytes - baseline,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    stepRssBytes, baseDtype,
    artifact: { kind: trainee.artifactKind, bytes: files.reduce((s, f) => s + f.bytes, 0), files },
    lossFirst: finite(losses[0]), lossLast: finite(losses[losses.length - 1]), lossSteps: losses.length,
    lr, init: init ?? null, valLossBefore, valLossAfter, evalWindows: evalIds ? evalWindows : 0, curve, trainMs,
    launchesPerStep: (after.kernelLaunches - before.kernelLaunches) / steps,
    readbacksPerStep: (after.readbacks - before.readbacks) / steps,
    uploadsPerStep: (after.uploads - before.uploads) / steps,
    liveTensorDrift: after.liveTensors - tensorsAfterFirst,
    buildMs,
  };
}

export async function w3Run(args: readonly string[]): Promise<W3Result> {
  const backend = option(args, 'backend') ?? 'cpu';
  const info = backendInfo(backend);
  const reps = intOption(args, 'reps', 50);
  const warmup = intOption(args, 'warmup', 5, 0);
  const seed = intOption(args, 'seed', 0, 0);
  const tokens = tokensFrom(args);
  const w = workload(parseSize(option(args, 'size')), tokens.vocabSize);
  const T = w.config.blockSize;
  const tag = `w3 ${w.size} ${backend}`;
  const build = (): TransformerLM => {
    manualSeed(seed);
    return new TransformerLM(w.config, { backend });
  };

  const variants: LatencyVariant[] = [{ name: 'base', model: build() }];
  let loraError: string | null = null;
  let close = (): void => {};
  if (!flag(args, 'no-lora')) {
    try {
      const lora = await loadLoraMode();
      const made = lora.latencyVariants(build, seed);
      variants.push(...made.variants);
      close = made.close;
    } catch (e) {
      loraError = (e as Error).message;
      log(tag, `LoRA variants skipped: ${loraError}`);
    }
  }
  for (const v of variants) v.model.eval();

  const x = tensor(tokens.ids.subarray(0, T), { shape: [1, T], dtype: 'int32', backend });
  const run = (m: LossModel): Float32Array | Int32Array | Float64Array => tidy(() => noGrad(() => {
    const out = m.forward(x, {}) as { logits?: Tensor };
    if (!out.logits) throw new Error('the model returned no logits');
    return out.logits.dataSync(); // readback ends the timed region
  }));

  let mergedMaxAbsDiff: number | null = null;
  const unmerged = variants.find((v) => v.name === 'lora unmerged');
  const merged = variants.find((v) => v.name === 'lora merged');
  if (unmerged && merged) {
    const a = run(unmerged.model);
    const b = run(merged.model);
    mergedMaxAbsDiff = 0;
    for (let i = 0; i < a.length; i++) mergedMaxAbsDiff = Math.max(mergedMaxAbsDiff, Math.abs(a[i] - b[i]));
  }

  for (const v of variants) for (let i = 0; i < warmup; i++) run(v.model);
  // Round-robin over the variants, so machine noise hits them alike.
  const times = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (let r = 0; r < reps; r++) {
    for (const v of variants) {
      const s = performance.now();
      run(v.model);
      times.get(v.name)!.push(performance.now() - s);
    }
    if ((r + 1) % 10 === 0 || r + 1 === reps) log(tag, `rep ${r + 1}/${reps}`);
  }
  x.dispose();
  close();
  const rows: LatencyRow[] = variants.map((v) => {
    const s = stats(times.get(v.name)!);
    return { name: v.name, medianMs: s.median, minMs: s.min, maxMs: s.max };
  });
  return {
    kind: 'w3', ...info, size: w.size, config: w.config, tokens: T, warmup, reps, rows, mergedMaxAbsDiff, loraError,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

/** One worker measurement by its `--mode`; `progress` gets the log lines. */
export async function runMode(args: readonly string[], progress: (tag: string, msg: string) => void = log): Promise<WorkerResult> {
  const mode = option(args, 'mode') ?? 'full';
  if (mode === 'full' || mode === 'lora') return trainRun(mode, args, progress);
  if (mode === 'w3') return w3Run(args);
  if (mode === 'pretrain') return { kind: 'pretrain', info: await pretrainRun(args, (m) => progress('pretrain', m)) } satisfies PretrainResult;
  throw new Error(`w2-worker: --mode must be full, lora, w3 or pretrain, got '${mode}'`);
}

async function main(args: string[]): Promise<void> {
  const result = await runMode(args);
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    const detail = e instanceof Error ? (process.env.LOWRANK_BENCH_DEBUG ? e.stack ?? e.message : e.message) : String(e);
    process.stderr.write(`w2-worker: ${detail}\n`);
    process.exitCode = 1;
  });
}
