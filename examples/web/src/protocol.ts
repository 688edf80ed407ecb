// Messages between the page (main thread) and the training worker.
import type { BaseSpec, LoraSpec, PeftFiles, TrainSpec } from './recipe.ts';

export type BackendChoice = 'cpu' | 'gpu' | 'webgpu';

/** What the page tells the user about a base model. */
export interface BaseInfo {
  /** 'char': the page's own character-level GPT; 'hf': a Hugging Face model folder with its tokenizer. */
  kind: 'char' | 'hf';
  source: string;
  parameters: number;
  vocabSize: number;
  blockSize: number;
  nLayer: number;
  nEmbd: number;
  /** The characters the model knows (char models; empty for a Hugging Face tokenizer). */
  vocab: string[];
  /** Hugging Face models: config.json's model_type and the modules LoRA adapts. */
  modelType?: string;
  targets?: string[];
}

export interface BackendInfo {
  name: BackendChoice;
  /** What really runs: 'cpu' or the gpu.js mode (webgl2, webgl, webasm, cpu; webgpu for the webgpu choice). */
  mode: string;
  /** Set when the gpu backend did not get WebGL2: what it fell back to and why. */
  fallback?: string;
  /** webgpu: the adapter that answered. */
  adapter?: string;
  /** cpu: the threads its kernels run on (workers sharing one WebAssembly.Memory), and why 1 if so. */
  threads?: number;
  threadsNote?: string;
}

/** Summary of a finished (or stopped) run. */
export interface RunSummary {
  phase: 'pretrain' | 'finetune';
  backend: BackendInfo;
  losses: number[];
  stepMs: number[];
  stopped: boolean;
  /** Tokens per optimizer step (batch x context). */
  tokensPerStep: number;
}

/** Requests: each gets exactly one reply with the same id. */
export type Request =
  | { type: 'setBackend'; backend: BackendChoice }
  | { type: 'pretrain'; text: string; spec: BaseSpec; train: TrainSpec }
  | { type: 'loadBase'; bytes: Uint8Array; fileName: string }
  | { type: 'loadPretrained'; files: [string, Uint8Array][]; name: string }
  | { type: 'finetune'; text: string; skipUnknown: boolean; train: TrainSpec; lora: LoraSpec }
  | { type: 'loadAdapter'; files: PeftFiles }
  | { type: 'generate'; prompt: string; maxNewTokens: number; temperature: number; seed: number; useAdapter: boolean }
  | { type: 'probe'; text: string; useAdapter: boolean }
  | { type: 'poolCheck'; n: number }
  | { type: 'stop' };

export interface Replies {
  setBackend: BackendInfo;
  pretrain: { run: RunSummary; base: BaseInfo; baseBytes: Uint8Array };
  loadBase: { base: BaseInfo; baseBytes: Uint8Array };
  loadPretrained: { base: BaseInfo };
  finetune: { run: RunSummary; adapter: PeftFiles; trainable: number };
  loadAdapter: { trainable: number };
  generate: { text: string };
  probe: { logits: Float32Array; ids: Int32Array };
  /** An n x n x n cpu matmul on every thread and on one: same bits?, and each one's time. */
  poolCheck: { threads: number; sameBits: boolean; msThreads: number; msOne: number };
  stop: { stopping: boolean };
}

export type RequestType = Request['type'];

export type ToWorker = Request & { id: number };

/** Progress of a run, sent after every step. */
export interface Progress {
  type: 'progress';
  phase: 'pretrain' | 'finetune';
  step: number;
  steps: number;
  loss: number;
  ms: number;
  tokensPerSecond: number;
}

export type FromWorker =
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: string }
  | Progress
  | { type: 'log'; message: string };
