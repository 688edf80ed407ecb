/**
 * Text generation for the pre-trained architectures, with transformers'
 * semantics: greedy unless `doSample`; then temperature, top-k (default 50,
 * as transformers) and top-p; repetition penalty; stop at any eos id; a KV
 * cache (grouped-query: the cache holds the key/value heads only) or a full
 * recompute per token, which give the same greedy tokens.
 */
import { Rng, Tensor, globalRng, narrow, noGrad, tensor, tidy, type NestedArray } from '@lowrank/core';
import { KVCache } from '../layers.ts';
import type { Module } from '../module.ts';

export interface PretrainedGenerateOptions {
  /** Tokens to append at most (transformers' max_new_tokens). */
  maxNewTokens: number;
  /** Sample instead of taking the argmax (default false: greedy, as transformers). */
  doSample?: boolean;
  /** Softmax temperature when sampling (default 1). */
  temperature?: number;
  /** Sample among the k most likely tokens (default 50 when sampling, as transformers; 0 turns it off). */
  topK?: number;
  /** Nucleus sampling: the smallest set of tokens whose probability reaches topP (default 1: off). */
  topP?: number;
  /** > 1 discourages tokens already in the sequence (CTRL's rule, as transformers); default 1. */
  repetitionPenalty?: number;
  /**
   * Stop ids: a row that emits one is finished (later positions get padTokenId).
   * Default: generation_config.json's eos_token_id, else config.json's; null or [] turns stopping off.
   */
  eosTokenId?: number | readonly number[] | null;
  /** Fills finished rows (default: pad_token_id of the config, else the first eos id). */
  padTokenId?: number;
  /** Seeds a private generator for sampling, leaving the global RNG alone. */
  seed?: number;
  /** Reuse past keys/values (default true); the no-cache path recomputes everything per token. */
  useCache?: boolean;
}

/** What generate needs from a model. */
export interface GenerativeModel extends Module {
  forward(ids: Tensor, opts?: { kvCache?: KVCache }): { logits: Tensor };
  readonly numLayers: number;
  readonly maxPositions: number;
  readonly vocabSize: number;
  readonly generationConfig?: Readonly<Record<string, unknown>> | null;
  readonly config?: { eosTokenId?: number | number[] | null; padTokenId?: number | null };
}

const KNOWN: readonly (keyof PretrainedGenerateOptions)[] = [
  'maxNewTokens', 'doSample', 'temperature', 'topK', 'topP', 'repetitionPenalty', 'eosTokenId', 'padTokenId', 'seed', 'useCache',
];

/** transformers' names that map onto another option here, or are not supported. */
const HF_HINTS: Record<string, string> = {
  max_length: "use maxNewTokens (it counts new tokens only)",
  maxLength: "use maxNewTokens (it counts new tokens only)",
  num_beams: 'beam search is not supported',
  numBeams: 'beam search is not supported',
  stop_token_ids: 'use eosTokenId (it accepts a list of stop ids)',
  stopTokenIds: 'use eosTokenId (it accepts a list of stop ids)',
};

function camel(s: string): string {
  return s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/**
 * Throws on an option name this API does not know, suggesting the right one
 * (`top_p` -> `topP`, `do_sample` -> `doSample`).
 * @example checkOptionNames('generate', opts, ['maxNewTokens', 'topP']);
 */
export function checkOptionNames(what: string, opts: object, known: readonly string[], hints: Record<string, string> = {}): void {
  for (const key of Object.keys(opts)) {
    if (known.includes(key)) continue;
    let hint = hints[key];
    if (!hint) {
      const c = camel(key);
      const lower = key.toLowerCase().replace(/_/g, '');
      const byCase = known.find((k) => k === c || k.toLowerCase() === lower);
      const close = known.map((k) => [k, editDistance(k.toLowerCase(), key.toLowerCase())] as const).sort((a, b) => a[1] - b[1])[0];
      if (byCase) hint = `did you mean '${byCase}'?`;
      else if (close && close[1] <= 2) hint = `did you mean '${close[0]}'?`;
      else hint = `known options: ${known.join(', ')}`;
    }
    throw new Error(`${what}: unknown option '${key}' (${hint})`);
  }
}

function checkNumber(name: string, v: unknown, ok: (n: number) => boolean, want: string): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new Error(`generate: ${name} must be ${want}, got ${String(v)}`);
}

function stopIds(model: GenerativeModel, opt: PretrainedGenerateOptions['eosTokenId']): number[] {
  const pick = (v: unknown): number[] | null => {
    if (v === undefined) return null;
    if (v === null) return [];
    if (typeof v === 'number') return [v];
    if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
    return null;
  };
  return pick(opt) ?? pick(model.generationConfig?.eos_token_id) ?? pick(model.config?.eosTokenId) ?? [];
}

function toRows(ids: Tensor | readonly number[] | readonly (readonly number[])[]): number[][] {
  if (ids instanceof Tensor) {
    if (ids.rank !== 2 || ids.dtype !== 'int32') throw new Error(`generate: ids must be int32 [B, T], got ${ids.describe()}`);
    const flat = ids.dataSync();
    const [B, T] = ids.shape;
    return Array.from({ length: B }, (_, b) => Array.from(flat.subarray(b * T, (b + 1) * T)));
  }
  const rows = ids.length > 0 && Array.isArray(ids[0]) ? (ids as readonly (readonly number[])[]).map((r) => [...r]) : [[...(ids as readonly number[])]];
  if (rows.some((r) => r.length !== rows[0].length)) throw new Error('generate: every prompt row must have the same length (no padding support)');
  return rows;
}

/**
 * Appends up to `maxNewTokens` tokens to every row of ids [B, T]; returns
 * int32 [B, T + n] where n stops early once every row has emitted a stop id.
 * @example const out = generate(model, [[1, 5, 9]], { maxNewTokens: 16, doSample: true, topP: 0.9, seed: 0 });
 */
export function generate(
  model: GenerativeModel,
  ids: Tensor | readonly number[] | readonly (readonly number[])[],
  opts: PretrainedGenerateOptions,
): Tensor {
  if (typeof opts !== 'object' || opts === null) throw new Error('generate: options { maxNewTokens, ... } are required');
  checkOptionNames('generate', opts, KNOWN, HF_HINTS);
  const { maxNewTokens } = opts;
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new Error(`generate: maxNewTokens must be a non-negative integer, got ${String(maxNewTokens)}`);
  const doSample = opts.doSample ?? false;
  if (typeof doSample !== 'boolean') throw new Error(`generate: doSample must be true or false, got ${String(doSample)}`);
  checkNumber('temperature', opts.temperature, (n) => n > 0, 'a positive number');
  checkNumber('topK', opts.topK, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer');
  checkNumber('topP', opts.topP, (n) => n > 0 && n <= 1, 'in (0, 1]');
  checkNumber('repetitionPenalty', opts.repetitionPenalty, (n) => n > 0, 'a positive number');
  if (!doSample) {
    const sampling = (['temperature', 'topK', 'topP', 'seed'] as const).filter((k) => opts[k] !== undefined);
    if (sampling.length) throw new Error(`generate: ${sampling.join(', ')} only apply when sampling; pass doSample: true (greedy is the default, as in transformers)`);
  }
  const rows = toRows(ids);
  const B = rows.length;
  const T0 = rows[0].length;
  if (T0 === 0) throw new Error('generate: the prompt must hold at least one token');
  const V = model.vocabSize;
  for (const r of rows) for (const t of r) if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`generate: token id ${t} is outside the vocabulary [0, ${V})`);
  if (T0 + maxNewTokens > model.maxPositions) {
    throw new Error(`generate: the prompt (${T0}) plus maxNewTokens (${maxNewTokens}) exceed the model's ${model.maxPositions} positions`);
  }
  const eos = stopIds(model, opts.eosTokenId);
  const pad = opts.padTokenId ?? model.config?.padTokenId ?? eos[0] ?? 0;
  const rng = opts.seed === undefined ? globalRng : new Rng(opts.seed);
  const backend = model.parameters()[0]?.backend.name;
  const cache = (opts.useCache ?? true) ? new KVCache(model.numLayers) : null;
  const finished = new Array<boolean>(B).fill(false);
  const wasTraining = model.training;
  model.eval();
  try {
    for (let step = 0; step < maxNewTokens && !finished.every(Boolean); step++) {
      const len = rows[0].length;
      const from = cache && cache.length > 0 ? len - 1 : 0;
      const last = tidy(() => noGrad(() => {
        const input = tensor(rows.map((r) => r.slice(from)) as NestedArray, { dtype: 'int32', backend });
        const { logits } = model.forward(input, { kvCache: cache ?? undefined }); // [B, t, V]
        return narrow(logits, 1, len - from - 1, 1).dataSync(); // [B, 1, V]
      }));
      for (let b = 0; b < B; b++) {
        if (finished[b]) {
          rows[b].push(pad);
          continue;
        }
        const logits = Float64Array.from(last.subarray(b * V, (b + 1) * V));
        if (opts.repetitionPenalty !== undefined && opts.repetitionPenalty !== 1) applyRepetitionPenalty(logits, rows[b], opts.repetitionPenalty);
        const next = doSample ? sampleToken(logits, opts.temperature ?? 1, opts.topK ?? 50, opts.topP ?? 1, rng) : argmax(logits);
        rows[b].push(next);
        if (eos.includes(next)) finished[b] = true;
      }
    }
  } finally {
    cache?.dispose();
    model.train(wasTraining);
  }
  return tensor(rows as NestedArray, { dtype: 'int32', backend });
}

/** transformers' RepetitionPenaltyLogitsProcessor: seen tokens' logits divided by p when positive, multiplied when negative. */
function applyRepetitionPenalty(logits: Float64Array, seen: readonly number[], p: number): void {
  for (const t of new Set(seen)) logits[t] = logits[t] < 0 ? logits[t] * p : logits[t] / p;
}

function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Temperature, then top-k, then top-p (the order of transformers' warpers), then one draw. */
function sampleToken(logits: Float64Array, temperature: number, topK: number, topP: number, rng: Rng): number {
  const n = logits.length;
  let order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (topK > 0 && topK < n) order = order.slice(0, topK);
  const max = logits[order[0]] / temperature;
  let probs = order.map((i) => Math.exp(logits[i] / temperature - max));
  let total = probs.reduce((s, p) => s + p, 0);
  if (topP < 1) {
    // Keep the most likely tokens until their mass reaches topP (at least one).
    let mass = 0;
    let keep = 0;
    while (keep < order.length && (keep === 0 || mass < topP * total)) mass += probs[keep++];
    order = order.slice(0, keep);
    probs = probs.slice(0, keep);
    total = mass;
  }
  let u = rng.random() * total;
  for (let j = 0; j < order.length; j++) {
    u -= probs[j];
    if (u < 0) return order[j];
  }
  return order[order.length - 1];
}
