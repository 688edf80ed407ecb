import { Rng } from '@lowrank/core';

/**
 * A source of uniform 32-bit random integers. `Xoshiro128` is the default; any
 * object with `nextUint32()` (such as the core engine's `Rng`) plugs in.
 */
export interface RandomSource {
  /** Uniform integer in `[0, 2**32)`. */
  nextUint32(): number;
}

/**
 * The core engine's seeded xoshiro128** generator, with a 4-word state (the
 * sampler draws integers only, so the cached normal deviate is not part of it).
 *
 * @example const rng = new Xoshiro128(42); const s = rng.getState(); rng.nextUint32(); rng.setState(s);
 */
export class Xoshiro128 extends Rng implements RandomSource {
  constructor(seed = 0) {
    if (!Number.isFinite(seed)) throw new Error(`Xoshiro128: seed must be a finite number, got ${seed}`);
    super(seed);
  }

  /** The four 32-bit state words; JSON-safe. @example const saved = rng.getState() */
  override getState(): number[] {
    return super.getState().slice(0, 4);
  }

  /** Restores a state from `getState()`. @example rng.setState(saved) */
  override setState(state: readonly number[]): void {
    if (state.length !== 4 || !state.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) {
      throw new Error(`Xoshiro128.setState: expected 4 uint32 numbers, got ${JSON.stringify(state)}`);
    }
    if (state.every((v) => v === 0)) throw new Error('Xoshiro128.setState: the all-zero state is invalid');
    super.setState([...state, NaN]);
  }
}

/**
 * Unbiased integer in `[0, n)` by rejection sampling, for `1 <= n <= 2**32`.
 *
 * @example randomInt(new Xoshiro128(0), 6) // 0..5
 */
export function randomInt(rng: RandomSource, n: number): number {
  if (!(Number.isInteger(n) && n >= 1 && n <= 4294967296)) {
    throw new Error(`randomInt: n must be an integer in [1, 2**32], got ${n}`);
  }
  const limit = 4294967296 - (4294967296 % n);
  for (;;) {
    const u = rng.nextUint32();
    if (u < limit) return u % n;
  }
}

/**
 * Contiguous split: the first `1 - valFraction` of the ids train, the rest validate.
 * Both parts are views (`subarray`) of `ids`, not copies.
 *
 * @example const { train, val } = splitTrainVal(ids, 0.1)
 */
export function splitTrainVal(ids: Int32Array, valFraction = 0.1): { train: Int32Array; val: Int32Array } {
  if (!(valFraction >= 0 && valFraction < 1)) {
    throw new Error(`splitTrainVal: valFraction must be in [0, 1), got ${valFraction}`);
  }
  const nTrain = Math.floor(ids.length * (1 - valFraction));
  return { train: ids.subarray(0, nTrain), val: ids.subarray(nTrain) };
}

export interface BatchOptions {
  batchSize: number;
  /** Tokens per row (the context length). */
  blockSize: number;
  rng: RandomSource;
}

/** A batch of next-token examples, row-major `[batchSize, blockSize]`. */
export interface Batch {
  /** Inputs: `x[b * blockSize + t] = ids[offsets[b] + t]`. */
  x: Int32Array;
  /** Targets, `x` shifted by one: `y[b * blockSize + t] = ids[offsets[b] + t + 1]`. */
  y: Int32Array;
  shape: [batchSize: number, blockSize: number];
  /** Start of each row in `ids`, each in `[0, ids.length - blockSize - 1]`. */
  offsets: Int32Array;
}

/**
 * Samples `batchSize` random windows of `blockSize + 1` tokens (nanoGPT's `get_batch`).
 *
 * @example const { x, y } = sampleBatch(train, { batchSize: 8, blockSize: 64, rng: new Xoshiro128(0) })
 */
export function sampleBatch(ids: Int32Array, options: BatchOptions): Batch {
  const { batchSize, blockSize, rng } = options;
  checkSizes('sampleBatch', ids, batchSize, blockSize);
  const x = new Int32Array(batchSize * blockSize);
  const y = new Int32Array(batchSize * blockSize);
  const offsets = new Int32Array(batchSize);
  const nStarts = ids.length - blockSize;
  for (let b = 0; b < batchSize; b++) {
    const o = randomInt(rng, nStarts);
    offsets[b] = o;
    x.set(ids.subarray(o, o + blockSize), b * blockSize);
    y.set(ids.subarray(o + 1, o + 1 + blockSize), b * blockSize);
  }
  return { x, y, shape: [batchSize, blockSize], offsets };
}

function checkSizes(where: string, ids: Int32Array, batchSize: number, blockSize: number): void {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
    throw new Error(`${where}: batchSize must be a positive integer, got ${batchSize}`);
  }
  if (!(Number.isInteger(blockSize) && blockSize >= 1)) {
    throw new Error(`${where}: blockSize must be a positive integer, got ${blockSize}`);
  }
  if (ids.length < blockSize + 1) {
    throw new Error(
      `${where}: data has ${ids.length} tokens but needs at least blockSize + 1 = ${blockSize + 1} ` +
        `(one window of inputs plus the next-token target)`,
    );
  }
}

export interface BatchSamplerOptions {
  batchSize: number;
  blockSize: number;
  /** Random source; default `new Xoshiro128(seed)`. */
  rng?: RandomSource;
  /** Seed for the default generator (ignored when `rng` is given). Default 0. */
  seed?: number;
}

/** A `RandomSource` whose state can be saved and restored (`Xoshiro128`, the core `Rng`). */
export interface StatefulRandomSource extends RandomSource {
  getState(): number[];
  setState(state: readonly number[]): void;
}

/**
 * Draws batches from one token stream with its own seeded generator.
 *
 * @example const batches = new BatchSampler(train, { batchSize: 8, blockSize: 64, seed: 1 }); const { x, y } = batches.next();
 */
export class BatchSampler {
  readonly ids: Int32Array;
  readonly batchSize: number;
  readonly blockSize: number;
  readonly rng: RandomSource;

  constructor(ids: Int32Array, options: BatchSamplerOptions) {
    checkSizes('BatchSampler', ids, options.batchSize, options.blockSize);
    this.ids = ids;
    this.batchSize = options.batchSize;
    this.blockSize = options.blockSize;
    this.rng = options.rng ?? new Xoshiro128(options.seed ?? 0);
  }

  /** Next random batch. @example sampler.next().shape // [batchSize, blockSize] */
  next(): Batch {
    return sampleBatch(this.ids, { batchSize: this.batchSize, blockSize: this.blockSize, rng: this.rng });
  }

  /** Generator state to store with a checkpoint. @example const saved = sampler.getState() */
  getState(): number[] {
    return this.statefulRng('getState').getState();
  }

  /** Resumes the batch sequence from `getState()`. @example sampler.setState(saved) */
  setState(state: readonly number[]): void {
    this.statefulRng('setState').setState(state);
  }

  private statefulRng(method: string): StatefulRandomSource {
    const rng = this.rng as Partial<StatefulRandomSource>;
    if (typeof rng.getState !== 'function' || typeof rng.setState !== 'function') {
      throw new Error(`BatchSampler.${method}: the random source has no getState()/setState()`);
    }
    return rng as StatefulRandomSource;
  }
}
