import { Tensor, getFileHost, noGrad, tensor, tidy } from '@lowrank/core';
import type { Batch } from './data/batches.ts';
import { serializeCheckpoint, type Resumable } from './checkpoint.ts';
import type { Module } from './module.ts';
import { clipGradNorm } from './optim/clip.ts';
import type { BaseHyper, Optimizer } from './optim/optimizer.ts';
import type { LambdaLR } from './optim/schedules.ts';

/** A language model as `train` sees it: ids [B, T] and targets -> a scalar loss. */
export interface LossModel extends Module {
  forward(ids: Tensor, opts: { targets?: Tensor }): { loss?: Tensor };
}

/** A source of batches (the data `BatchSampler`). */
export interface BatchSource {
  next(): Batch;
}

export interface TrainOptions {
  model: LossModel;
  optimizer: Optimizer<BaseHyper>;
  train: BatchSource & Partial<Resumable>;
  /** Total optimizer steps to reach (counting `startStep`). */
  steps: number;
  /** Steps already done (after resuming). Default 0. */
  startStep?: number;
  scheduler?: LambdaLR;
  /** Clip the global gradient norm to this value. */
  gradClip?: number;
  val?: BatchSource;
  /** Evaluate every N steps (and after the last). */
  evalEvery?: number;
  /** Validation batches per evaluation (default 8). */
  evalBatches?: number;
  /** Where to write checkpoints (atomically); needs a file host (`import '@lowrank/nn/node'` in Node). */
  checkpointPath?: string;
  checkpointEvery?: number;
  /** Receives each checkpoint's bytes instead of (or besides) `checkpointPath`: browsers store or download them. */
  onCheckpoint?: (bytes: Uint8Array, step: number) => void | Promise<void>;
  /** Backend for the batches (default: the model's). */
  backend?: string;
  /** Progress output: true (stderr, default), false, or a line sink. */
  progress?: boolean | ((line: string) => void);
  /** Called after every step. */
  onStep?: (info: StepInfo) => void;
}

/** Node's process.stderr, as far as the progress bar uses it (absent in browsers). */
interface StderrLike {
  isTTY?: boolean;
  write(s: string): unknown;
}

export interface StepInfo {
  step: number;
  loss: number;
  lr: number;
  gradNorm?: number;
  tokensPerSecond: number;
}

export interface TrainResult {
  losses: number[];
  valLosses: { step: number; loss: number }[];
  steps: number;
  tokensPerSecond: number;
  seconds: number;
}

/**
 * Mean loss over `batches` validation batches, in eval mode without a graph.
 * @example const val = evaluate(model, valSampler, 8);
 */
export function evaluate(model: LossModel, source: BatchSource, batches = 8, backend?: string): number {
  let total = 0;
  inEval(model, () => {
    for (let i = 0; i < batches; i++) total += readNow(validationLoss(model, source, backend));
  });
  return total / batches;
}

/**
 * `evaluate` with asynchronous readback, for every backend (WebGPU too).
 * @example const val = await evaluateAsync(model, valSampler, 8);
 */
export async function evaluateAsync(model: LossModel, source: BatchSource, batches = 8, backend?: string): Promise<number> {
  const wasTraining = model.training;
  model.eval();
  let total = 0;
  try {
    for (let i = 0; i < batches; i++) total += await readLater(validationLoss(model, source, backend));
  } finally {
    model.train(wasTraining);
  }
  return total / batches;
}

function inEval(model: LossModel, fn: () => void): void {
  const wasTraining = model.training;
  model.eval();
  try {
    fn();
  } finally {
    model.train(wasTraining);
  }
}

/** One validation batch's loss, as a detached scalar tensor (the graph and inputs freed). */
function validationLoss(model: LossModel, source: BatchSource, backend: string | undefined): Tensor {
  return tidy(() => noGrad(() => {
    const { x, y } = toTensors(source.next(), backend ?? backendOf(model));
    return model.forward(x, { targets: y }).loss!.detach();
  }));
}

function readNow(t: Tensor): number {
  try {
    return t.item();
  } finally {
    t.dispose();
  }
}

async function readLater(t: Tensor): Promise<number> {
  try {
    return await t.itemAsync();
  } finally {
    t.dispose();
  }
}

/** The device work of one step; the loss comes back as a detached scalar tensor, not yet read. */
function stepOnDevice(
  model: LossModel, optimizer: Optimizer<BaseHyper>, batch: Batch, opts: { scheduler?: LambdaLR; gradClip?: number; backend?: string },
): { loss: Tensor; gradNorm?: number } {
  return tidy(() => {
    const { x, y } = toTensors(batch, opts.backend ?? backendOf(model));
    optimizer.zeroGrad();
    const { loss } = model.forward(x, { targets: y });
    if (!loss) throw new Error('trainStep: the model returned no loss');
    loss.backward();
    const gradNorm = opts.gradClip !== undefined
      ? clipGradNorm(optimizer.paramGroups.flatMap((g) => g.params), opts.gradClip)
      : undefined;
    optimizer.step();
    opts.scheduler?.step();
    return { loss: loss.detach(), gradNorm };
  });
}

/**
 * One training step inside `tidy`: forward, backward, optional clip, optimizer and scheduler step.
 * @example const loss = trainStep(model, opt, sampler.next());
 */
export function trainStep(
  model: LossModel, optimizer: Optimizer<BaseHyper>, batch: Batch,
  opts: { scheduler?: LambdaLR; gradClip?: number; backend?: string } = {},
): { loss: number; gradNorm?: number } {
  const { loss, gradNorm } = stepOnDevice(model, optimizer, batch, opts);
  return { loss: readNow(loss), gradNorm };
}

/**
 * `trainStep` whose loss is read back asynchronously, so it runs on every
 * backend (on WebGPU the synchronous readers throw). `gradClip` still reads
 * the gradient norm synchronously.
 * @example const { loss } = await trainStepAsync(model, opt, sampler.next());
 */
export async function trainStepAsync(
  model: LossModel, optimizer: Optimizer<BaseHyper>, batch: Batch,
  opts: { scheduler?: LambdaLR; gradClip?: number; backend?: string } = {},
): Promise<{ loss: number; gradNorm?: number }> {
  const { loss, gradNorm } = stepOnDevice(model, optimizer, batch, opts);
  return { loss: await readLater(loss), gradNorm };
}

/**
 * The training loop: steps inside `tidy`, a one-line progress bar on stderr
 * (steps, loss, tokens/s, ETA; plain lines when stderr is not a TTY),
 * periodic evaluation and atomic checkpoints.
 * @example await train({ model, optimizer: new AdamW(model.parameters()), train: sampler, steps: 500 });
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const start = o.startStep ?? 0;
  const sink = o.progress === false ? null : typeof o.progress === 'function' ? o.progress : null;
  const stderr = (globalThis as { process?: { stderr?: StderrLike } }).process?.stderr;
  const tty = o.progress !== false && sink === null && stderr?.isTTY === true;
  const write = (line: string, final: boolean): void => {
    if (o.progress === false) return;
    if (sink) sink(line);
    else if (tty) stderr?.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else if (stderr) stderr.write(`${line}\n`);
    else console.log(line);
  };
  const plainEvery = Math.max(1, Math.floor((o.steps - start) / 20));
  const losses: number[] = [];
  const valLosses: { step: number; loss: number }[] = [];
  const t0 = performance.now();
  let tokens = 0;
  o.model.train();
  for (let step = start; step < o.steps; step++) {
    const batch = o.train.next();
    const { loss, gradNorm } = await trainStepAsync(o.model, o.optimizer, batch, o);
    tokens += batch.x.length;
    losses.push(loss);
    const done = step + 1;
    const seconds = (performance.now() - t0) / 1000;
    const tps = tokens / Math.max(seconds, 1e-9);
    o.onStep?.({ step: done, loss, lr: o.optimizer.lr, gradNorm, tokensPerSecond: tps });
    let line = progressLine(done, o.steps, loss, tps, (seconds / (done - start)) * (o.steps - done));
    if (o.val && o.evalEvery && (done % o.evalEvery === 0 || done === o.steps)) {
      const v = await evaluateAsync(o.model, o.val, o.evalBatches ?? 8, o.backend);
      valLosses.push({ step: done, loss: v });
      line += ` | val ${v.toFixed(4)}`;
      write(line, true);
    } else if (tty || sink || done % plainEvery === 0 || done === o.steps) {
      write(line, done === o.steps);
    }
    if ((o.checkpointPath || o.onCheckpoint) && o.checkpointEvery && (done % o.checkpointEvery === 0 || done === o.steps)) {
      const bytes = serializeCheckpoint({
        model: o.model, optimizer: o.optimizer, scheduler: o.scheduler, step: done,
        sampler: o.train.getState && o.train.setState ? (o.train as Resumable) : undefined,
      });
      if (o.checkpointPath) await getFileHost('train (checkpointPath)').writeFile(o.checkpointPath, bytes);
      await o.onCheckpoint?.(bytes, done);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return { losses, valLosses, steps: o.steps, tokensPerSecond: tokens / Math.max(seconds, 1e-9), seconds };
}

function progressLine(step: number, total: number, loss: number, tps: number, etaSeconds: number): string {
  const width = 20;
  const filled = Math.round((width * step) / Math.max(total, 1));
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  return `[${bar}] step ${step}/${total} | loss ${loss.toFixed(4)} | ${Math.round(tps).toLocaleString('en-US')} tok/s | ETA ${formatSeconds(etaSeconds)}`;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

function backendOf(model: Module): string | undefined {
  return model.parameters()[0]?.backend.name;
}

function toTensors(b: Batch, backend: string | undefined): { x: Tensor; y: Tensor } {
  const shape = [...b.shape];
  return {
    x: tensor(b.x, { shape, dtype: 'int32', backend }),
    y: tensor(b.y, { shape, dtype: 'int32', backend }),
  };
}
