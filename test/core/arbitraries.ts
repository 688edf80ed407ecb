/** fast-check arbitraries and seeded tensor makers shared by the core tests. */
import fc from 'fast-check';
import { Rng, tensor, type Tensor } from '@lowrank/core';

export const dim = fc.integer({ min: 1, max: 4 });

/** Shapes of rank minRank..maxRank with sizes 1..maxDim (size-1 axes appear often). */
export function shapeArb(minRank = 0, maxRank = 3, maxDim = 4): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: minRank, maxLength: maxRank });
}

export const seedArb = fc.integer({ min: 0, max: 2 ** 31 - 1 });

export const size = (shape: readonly number[]): number => shape.reduce((p, q) => p * q, 1);

export interface RandOptions {
  low?: number;
  high?: number;
  /** Keep |v| >= this (relu's kink, division, log/sqrt of negatives). */
  minAbs?: number;
  requiresGrad?: boolean;
  backend?: string;
}

/** Seeded uniform values in [low, high), never all zero. */
export function randTensor(shape: readonly number[], seed: number, opts: RandOptions = {}): Tensor {
  const rng = new Rng(seed);
  const low = opts.low ?? -2;
  const high = opts.high ?? 2;
  const minAbs = opts.minAbs ?? 0;
  const values = Array.from({ length: size(shape) }, () => {
    let v = low + (high - low) * rng.random();
    if (Math.abs(v) < minAbs) v = v < 0 ? -minAbs - Math.abs(v) : minAbs + v;
    return Math.fround(v === 0 ? 0.5 : v);
  });
  return tensor(values, { shape, requiresGrad: opts.requiresGrad, backend: opts.backend });
}

/** Seeded values that are pairwise at least 0.05 apart (no ties for max). */
export function distinctTensor(shape: readonly number[], seed: number, opts: Omit<RandOptions, 'low' | 'high' | 'minAbs'> = {}): Tensor {
  const rng = new Rng(seed);
  const n = size(shape);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.random() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const values = perm.map((p) => Math.fround((p - n / 2) * 0.1 + 0.013 + 0.02 * rng.random()));
  return tensor(values, { shape, requiresGrad: opts.requiresGrad, backend: opts.backend });
}

/** Seeded int32 values in [0, high). */
export function randIndex(shape: readonly number[], high: number, seed: number, backend?: string): Tensor {
  const rng = new Rng(seed);
  const values = Array.from({ length: size(shape) }, () => Math.floor(rng.random() * high));
  return tensor(values, { shape, dtype: 'int32', backend });
}

/** Seeded 0/1 mask (bool). */
export function randMask(shape: readonly number[], seed: number, backend?: string): Tensor {
  const rng = new Rng(seed);
  return tensor(Array.from({ length: size(shape) }, () => (rng.random() < 0.5 ? 1 : 0)), { shape, dtype: 'bool', backend });
}

/**
 * Two shapes that broadcast together: b drops some leading axes of a's shape,
 * and either side may have size-1 axes where the other has the full size.
 */
export const broadcastPair: fc.Arbitrary<[number[], number[]]> = fc
  .record({
    base: shapeArb(0, 3),
    drop: fc.integer({ min: 0, max: 3 }),
    oneA: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    oneB: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    swap: fc.boolean(),
  })
  .map(({ base, drop, oneA, oneB, swap }) => {
    const a = base.map((d, i) => (oneA[i] ? 1 : d));
    const kept = base.slice(Math.min(drop, base.length));
    const off = base.length - kept.length;
    const b = kept.map((d, i) => (oneB[i] && !oneA[i + off] ? 1 : d));
    return swap ? [b, a] : [a, b];
  });

/** Normalizes a possibly negative axis. */
export const axisOf = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

/** A random axis of a rank (>= 1), negative half of the time. */
export function axisArb(rank: number): fc.Arbitrary<number> {
  return fc.integer({ min: -rank, max: rank - 1 });
}

/** NumPy broadcast of two shapes (assumed compatible). */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  return Array.from({ length: rank }, (_, i) => {
    const da = a[i - (rank - a.length)] ?? 1;
    const db = b[i - (rank - b.length)] ?? 1;
    return da === 1 ? db : da;
  });
}
