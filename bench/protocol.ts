/**
 * What a bench worker process (bench/w2-worker.ts) prints back: one line
 * `RESULT <json>` on stdout. Types only, shared by the worker and the suites.
 */
import type { Tensor } from '@lowrank/core';
import type { LossModel, TransformerConfig, TransformerLM } from '@lowrank/nn';
import type { PretrainInfo } from './pretrain.ts';

export type TrainMode = 'full' | 'lora';

/** Backend name, its mode (gpu.js mode on gpu) and precision: every row carries them. */
export interface BackendRow {
  backend: string;
  mode: string;
  precision: string;
  /** cpu backend threads (1 elsewhere). */
  threads: number;
}

export interface TrainResult extends BackendRow {
  kind: 'train';
  trainMode: TrainMode;
  size: string;
  config: TransformerConfig;
  batchSize: number;
  tokensPerStep: number;
  data: string;
  /** LoRA settings when trainMode is 'lora'. */
  lora: { r: number; alpha: number; targets: string[] } | null;
  warmup: number;
  steps: number;
  /** Per timed step, ms; empty on the meta backend (nothing runs). */
  stepMs: number[];
  medianMs: number | null;
  /** Process CPU time (user + system, all threads) per timed step, ms: less sensitive to a busy machine than wall time. */
  cpuMs: number[];
  medianCpuMs: number | null;
  minMs: number | null;
  maxMs: number | null;
  tokensPerSecond: number | null;
  trainableParams: number;
  totalParams: number;
  weightBytes: number;
  gradientBytes: number;
  optimizerStateBytes: number;
  /** Live tensor bytes between steps (weights, optimizer state, gradients). */
  liveBytesAfterStep: number;
  /** Live tensor bytes at the end of a forward pass (state + the activations the graph holds), max over timed steps. */
  liveBytesAfterForward: number;
  /** Peak live tensor bytes over the timed steps (engine accounting, `memory().peakBytes`). */
  peakTensorBytes: number;
  /** `process.resourceUsage().maxRSS` of the worker process, bytes. */
  peakRssBytes: number;
  /**
   * The largest resident set sampled after each timed step's forward pass:
   * unlike peakRssBytes (the process high-water mark) it leaves out the
   * float32 weights a 16-bit base was built from.
   */
  stepRssBytes: number;
  /** Storage of the frozen base weight matrices (--dtype). */
  baseDtype: string;
  /** What this mode ships: the full model checkpoint, or the adapter. */
  artifact: { kind: 'full-checkpoint' | 'lora-adapter'; bytes: number; files: { name: string; bytes: number }[] };
  lossFirst: number | null;
  lossLast: number | null;
  /** Steps taken in total (warm-up + timed) when lossLast was read. */
  lossSteps: number;
  /** AdamW peak learning rate (10% warm-up, then cosine to 10% of it). */
  lr: number;
  /** The base checkpoint the run started from (null: fresh random init). */
  init: string | null;
  /** Mean loss on the fixed validation windows before the first and after the last step (null without --eval-data). */
  valLossBefore: number | null;
  valLossAfter: number | null;
  evalWindows: number;
  /** Validation loss against steps done and training wall time so far (before, every --eval-every steps, after). */
  curve: CurvePoint[];
  /** Wall time of every training step, warm-up included, ms. */
  trainMs: number;
  launchesPerStep: number;
  readbacksPerStep: number;
  uploadsPerStep: number;
  /** Tensors alive after the last step minus after the first timed one (0 = no leak). */
  liveTensorDrift: number;
  buildMs: number;
}

export interface LatencyRow {
  name: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
}

export interface W3Result extends BackendRow {
  kind: 'w3';
  size: string;
  config: TransformerConfig;
  tokens: number;
  warmup: number;
  reps: number;
  rows: LatencyRow[];
  /** max |logits(merged) - logits(unmerged)| (null without LoRA). */
  mergedMaxAbsDiff: number | null;
  /** Why the LoRA variants are missing, when they are. */
  loraError: string | null;
  peakRssBytes: number;
}

export interface CurvePoint {
  step: number;
  trainMs: number;
  valLoss: number;
}

/** A `--mode pretrain` run: what it wrote into the cache. */
export interface PretrainResult {
  kind: 'pretrain';
  info: PretrainInfo;
}

export type WorkerResult = TrainResult | W3Result | PretrainResult;

export const RESULT_PREFIX = 'RESULT ';

/** A model set up for one training mode: what to train and what to ship. */
export interface Trainee {
  model: LossModel;
  trainable: Tensor[];
  artifactKind: TrainResult['artifact']['kind'];
  /** Writes this mode's artifact (checkpoint or adapter) into `dir`. */
  save(dir: string): Promise<void>;
  lora: TrainResult['lora'];
}

/** A named model for W3 latency. */
export interface LatencyVariant {
  name: string;
  model: LossModel;
}

/** The LoRA side of the bench (bench/lora-mode.ts), loaded only when a LoRA measurement runs. */
export interface LoraMode {
  loraTrainee(base: TransformerLM, settings?: { r: number; alpha: number; targets: readonly string[] }): Promise<Trainee>;
  /** LoRA unmerged / merged variants built from fresh copies of the same base (`build`). */
  latencyVariants(build: () => TransformerLM, seed: number): { variants: LatencyVariant[]; close(): void };
}
