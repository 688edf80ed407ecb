/** What the pre-trained architectures share: options, the causal-LM loss, tying, generate and save hooks. */
import { Tensor, crossEntropy, forwardScope, narrow } from '@lowrank/core';
import { Module } from '../module.ts';
import type { Embedding, KVCache, Linear } from '../layers.ts';
import { ARCHITECTURES, type PretrainedConfig } from './config.ts';
import { checkOptionNames, generate, type PretrainedGenerateOptions } from './generate.ts';
import { openSink, type SinkInput } from './source.ts';
import { saveWeights, type SaveWeightsOptions } from './weights.ts';

/** Options for building an architecture from a config. */
export interface PretrainedModelOptions {
  /** Backend for the parameters (default: the default backend; `'meta'` builds shapes only). */
  backend?: string;
}

export interface CausalLMForwardOptions {
  /** int32 [B, T] next-token targets (already shifted, like TransformerLM); -100 is ignored. */
  targets?: Tensor;
  /**
   * int32 [B, T] labels as transformers takes them: the loss predicts
   * labels[:, t + 1] from position t (shifted inside), mean over non -100.
   */
  labels?: Tensor;
  /** Incremental decoding: positions continue from `kvCache.length`, which advances by T. */
  kvCache?: KVCache;
}

export interface CausalLMOutput {
  /** [B, T, vocabSize] */
  logits: Tensor;
  loss?: Tensor;
}

/**
 * Loss for `targets` (as given) or `labels` (shifted by one, as transformers' causal LM loss).
 * Returns logits unchanged when neither is given.
 */
export function causalLmLoss(logits: Tensor, opts: CausalLMForwardOptions): CausalLMOutput {
  const [B, T] = logits.shape;
  const check = (t: Tensor, what: string): void => {
    if (t.rank !== 2 || t.dtype !== 'int32' || t.shape[0] !== B || t.shape[1] !== T) {
      throw new Error(`forward: ${what} must be int32 [${B}, ${T}] like the ids, got ${t.describe()}`);
    }
  };
  if (opts.targets && opts.labels) throw new Error('forward: pass targets (already shifted) or labels (shifted inside), not both');
  if (opts.targets) {
    check(opts.targets, 'targets');
    return { logits, loss: crossEntropy(logits, opts.targets, { ignoreIndex: -100 }) };
  }
  if (opts.labels) {
    check(opts.labels, 'labels');
    if (T < 2) throw new Error('forward: labels need at least 2 positions (the loss predicts token t + 1 from t)');
    const labels = opts.labels;
    const loss = forwardScope(() => {
      const l = narrow(logits, 1, 0, T - 1); // [B, T-1, V]
      const y = narrow(labels, 1, 1, T - 1); // [B, T-1]
      return crossEntropy(l, y, { ignoreIndex: -100 });
    });
    return { logits, loss };
  }
  return { logits };
}

/**
 * Base of the Hugging Face architectures: a Module whose state-dict keys are
 * transformers' own, with `generate()` and `savePretrained()`.
 */
export abstract class PreTrainedModel extends Module {
  abstract readonly config: PretrainedConfig;
  /** `transformer` (GPT-2) or `model` (LLaMA family): the prefix some checkpoints omit. */
  abstract readonly baseModelPrefix: string;
  abstract lmHead: Linear;
  /** generation_config.json when the checkpoint had one (defaults for generate, e.g. eos_token_id). */
  generationConfig: Readonly<Record<string, unknown>> | null = null;

  abstract override forward(ids: Tensor, opts?: CausalLMForwardOptions): CausalLMOutput;
  abstract inputEmbeddings(): Embedding;
  /** Longest sequence forward accepts. */
  abstract get maxPositions(): number;

  get numLayers(): number {
    return this.config.numHiddenLayers;
  }

  get vocabSize(): number {
    return this.config.vocabSize;
  }

  /** State-dict keys that alias another parameter and are not stored in checkpoints. */
  tiedKeys(): string[] {
    return this.config.tieWordEmbeddings ? ['lm_head.weight'] : [];
  }

  /** Points lm_head at the input embedding when the config ties them (after building or loading). */
  tieWeights(): void {
    if (!this.config.tieWordEmbeddings) return;
    const emb = this.inputEmbeddings().weight;
    const old = this.lmHead.weight;
    if (old === emb) return;
    this.lmHead.registerParameter('weight', emb);
    old.dispose();
  }

  protected checkInput(ids: Tensor, kvCache?: KVCache): void {
    const name = this.constructor.name;
    if (ids.rank !== 2 || ids.dtype !== 'int32') throw new Error(`${name}.forward: ids must be int32 [B, T], got ${ids.describe()}`);
    const past = kvCache?.length ?? 0;
    const total = past + ids.shape[1];
    if (total > this.maxPositions) {
      const field = this.positionsField();
      throw new Error(`${name}.forward: ${total} positions exceed ${field} ${this.maxPositions} of config.json`);
    }
  }

  /** The config field that bounds the sequence length (for errors). */
  protected positionsField(): string {
    return this.config.modelType === 'gpt2' ? 'n_positions' : 'max_position_embeddings';
  }

  /**
   * Appends tokens (greedy by default; sampling with `doSample`); see {@link PretrainedGenerateOptions}.
   * @example const out = model.generate(tensor([[1, 2, 3]], { dtype: 'int32' }), { maxNewTokens: 8 });
   */
  generate(ids: Tensor | readonly number[] | readonly (readonly number[])[], opts: PretrainedGenerateOptions): Tensor {
    return generate(this, ids, opts);
  }

  /**
   * Writes config.json (+ generation_config.json) and model.safetensors, or
   * shards with model.safetensors.index.json above `maxShardSize`, all as
   * float32, with transformers' keys (a tied lm_head is not stored). With a
   * directory (`@lowrank/nn/node`) every file is written to a temp name and
   * renamed only when all are written. Returns the file names.
   * @example await model.savePretrained('out/merged');
   */
  async savePretrained(out: SinkInput, opts: SaveWeightsOptions = {}): Promise<string[]> {
    checkOptionNames('savePretrained', opts, ['maxShardSize'], { max_shard_size: 'use maxShardSize (bytes)', safe_serialization: 'safetensors is always used' });
    const sink = await openSink(out);
    return saveWeights(this, this.config, this.tiedKeys(), sink, {
      generationConfig: this.generationConfig, architecture: ARCHITECTURES[this.config.modelType],
    }, opts);
  }
}
