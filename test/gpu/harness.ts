import type { Backend, DType, HostArray } from '../../packages/core/src/index.ts';

/** A tiny seeded generator for test inputs (never all zeros). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function randArray(n: number, rnd: () => number, lo = -2, hi = 2): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rnd();
  if (n > 0 && a.every((v) => v === 0)) a[0] = 1;
  return a;
}

export function randInts(n: number, rnd: () => number, hi: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.floor(rnd() * hi);
  return a;
}

export interface Input {
  values: ArrayLike<number>;
  dtype: DType;
}

/** Uploads inputs to a backend, runs fn, downloads every output, frees everything. */
export function runOn(
  be: Backend, inputs: readonly Input[], fn: (be: Backend, d: unknown[]) => unknown | unknown[], outSizes: readonly number[],
): HostArray[] {
  const d = inputs.map((x) => be.upload(x.values, x.dtype));
  const res = fn(be, d);
  const outs = Array.isArray(res) ? res : [res];
  const host = outs.map((o, i) => be.download(o, 'float32', outSizes[i]));
  for (const o of outs) if (o !== null && !d.includes(o)) be.free(o);
  for (const x of d) be.free(x);
  return host;
}

/** Max violation of |a - b| <= atol + rtol |b|, or null when within. */
export function mismatch(a: HostArray, b: HostArray, rtol = 2e-4, atol = 1e-4): string | null {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  let scale = 0;
  for (let i = 0; i < b.length; i++) if (Number.isFinite(b[i])) scale = Math.max(scale, Math.abs(b[i]));
  const tol = atol * Math.max(1, scale);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (Number.isNaN(y) && Number.isNaN(x)) continue;
    if (x === y) continue;
    if (!(Math.abs(x - y) <= tol + rtol * Math.abs(y))) return `at ${i}: gpu ${x} vs cpu ${y}`;
  }
  return null;
}
