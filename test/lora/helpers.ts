/** Small models, inputs and arbitraries shared by the LoRA property tests. */
import fc from 'fast-check';
import { Rng, manualSeed, noGrad, relu, tensor, tidy, type Tensor } from '@lowrank/core';
import { Linear, Module, TransformerLM, type TransformerConfig } from '@lowrank/nn';
import type { TargetModules } from '@lowrank/lora';

/** A stack of Linears with ReLU between: fc0, fc1, ... */
export class Mlp extends Module {
  readonly dims: number[];
  fcs: Linear[];

  constructor(dims: readonly number[], bias = true) {
    super();
    this.dims = [...dims];
    this.fcs = [];
    for (let i = 0; i + 1 < dims.length; i++) this.fcs.push(this.register(`fc${i}`, new Linear(dims[i], dims[i + 1], { bias })));
  }

  forward(x: Tensor): Tensor {
    let h = x;
    this.fcs.forEach((_, i) => {
      // read through the registry: LoRA swaps the children
      const fc = this.getSubmodule(`fc${i}`) as Module & { forward(t: Tensor): Tensor };
      h = fc.forward(h);
      if (i + 2 < this.dims.length) h = relu(h);
    });
    return h;
  }
}

export type Spec =
  | { kind: 'gpt' | 'llama'; nEmbd: number; nHead: number; nLayer: number; inter: number; vocab: number; batch: number; seq: number; seed: number }
  | { kind: 'mlp'; dims: number[]; rows: number; seed: number };

/** A model, its input, a runner, and the Linear kinds that can be targeted. */
export interface Built {
  model: Module;
  run: (m: Module) => Tensor;
  /** Runs forward (+ a scalar loss) for backward. */
  loss: (m: Module) => Tensor;
  kinds: string[];
}

export function transformerConfig(s: Extract<Spec, { kind: 'gpt' | 'llama' }>): TransformerConfig {
  const gpt = s.kind === 'gpt';
  return {
    flavour: s.kind, vocabSize: s.vocab, blockSize: 6, nLayer: s.nLayer, nHead: s.nHead, nEmbd: s.nEmbd,
    headDim: s.nEmbd / s.nHead, intermediateSize: s.inter, normEps: gpt ? 1e-5 : 1e-6, bias: gpt, tieWordEmbeddings: false,
    positionEmbedding: gpt ? 'learned' : 'rope', ...(gpt ? {} : { ropeTheta: 10000 }), norm: gpt ? 'layerNorm' : 'rmsNorm',
    mlp: gpt ? 'gelu_tanh' : 'swiglu', dropout: 0,
  };
}

/** Builds the spec's model with seeded weights and a fixed input. */
export function build(s: Spec): Built {
  manualSeed(s.seed);
  const rng = new Rng(s.seed + 1);
  if (s.kind === 'mlp') {
    const model = new Mlp(s.dims);
    const x = tensor(Array.from({ length: s.rows * s.dims[0] }, () => Math.fround(rng.random() * 2 - 1)), { shape: [s.rows, s.dims[0]] });
    const run = (m: Module): Tensor => (m as unknown as Mlp).forward(x);
    return { model, run, loss: (m) => { const y = run(m); return y.mul(y).mean(); }, kinds: s.dims.slice(1).map((_, i) => `fc${i}`) };
  }
  const model = new TransformerLM(transformerConfig(s));
  const n = s.batch * s.seq;
  const ids = tensor(Array.from({ length: n }, () => Math.floor(rng.random() * s.vocab)), { shape: [s.batch, s.seq], dtype: 'int32' });
  const targets = tensor(Array.from({ length: n }, () => Math.floor(rng.random() * s.vocab)), { shape: [s.batch, s.seq], dtype: 'int32' });
  const fwd = (m: Module): { logits: Tensor; loss?: Tensor } =>
    (m as unknown as { forward(i: Tensor, o?: { targets?: Tensor }): { logits: Tensor; loss?: Tensor } }).forward(ids, { targets });
  const kinds = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj', ...(s.kind === 'llama' ? ['gate_proj'] : [])];
  return { model, run: (m) => fwd(m).logits, loss: (m) => fwd(m).loss!, kinds };
}

/** Forward output as host values, with no graph kept. */
export function output(b: Built, m: Module = b.model): Float32Array {
  return tidy(() => noGrad(() => Float32Array.from(b.run(m).dataSync())));
}

export const seedArb = fc.integer({ min: 0, max: 1_000_000 });

/**
 * Tiny transformers of both flavours and MLPs. Sizes keep frozen weight shapes
 * ([C, C], [I, C], [C, I], [V, C]) apart from every other matmul output
 * (rows N = B*T in {2, 3, 4, 5, 6, 10}, r <= 3).
 */
export const specArb: fc.Arbitrary<Spec> = fc.oneof(
  fc.record({
    kind: fc.constantFrom('gpt' as const, 'llama' as const),
    nEmbd: fc.constantFrom(8, 12),
    nHead: fc.constantFrom(1, 2),
    nLayer: fc.integer({ min: 1, max: 2 }),
    inter: fc.constantFrom(20, 28),
    vocab: fc.constantFrom(11, 13),
    batch: fc.integer({ min: 1, max: 2 }),
    seq: fc.constantFrom(3, 5),
    seed: seedArb,
  }),
  fc.record({
    kind: fc.constant('mlp' as const),
    dims: fc.array(fc.constantFrom(7, 9, 14, 17), { minLength: 2, maxLength: 4 }),
    rows: fc.constantFrom(2, 4),
    seed: seedArb,
  }),
);

/** A non-empty subset of the model's Linear kinds, or 'all-linear'. */
export function targetsArb(kinds: readonly string[]): fc.Arbitrary<TargetModules> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.subarray([...kinds], { minLength: 1 }) },
    { weight: 1, arbitrary: fc.constant('all-linear') },
  );
}

/** Max |a - b| / max(|b|, tiny). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-30);
}

/** Same values bit for bit (signed zeros aside). */
export function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/**
 * Numerical rank of a row-major [m, n] float64 matrix by Gaussian elimination with full pivoting:
 * pivots below tol * max|M| count as zero.
 */
export function numericalRank(values: ArrayLike<number>, m: number, n: number, tol = 1e-4): number {
  const a = Float64Array.from(values);
  let max = 0;
  for (const v of a) max = Math.max(max, Math.abs(v));
  if (max === 0) return 0;
  const rowsUsed = new Uint8Array(m);
  const colsUsed = new Uint8Array(n);
  let rank = 0;
  for (let step = 0; step < Math.min(m, n); step++) {
    let pr = -1;
    let pc = -1;
    let best = 0;
    for (let i = 0; i < m; i++) {
      if (rowsUsed[i]) continue;
      for (let j = 0; j < n; j++) {
        if (colsUsed[j]) continue;
        const v = Math.abs(a[i * n + j]);
        if (v > best) { best = v; pr = i; pc = j; }
      }
    }
    if (best <= tol * max) break;
    rowsUsed[pr] = 1;
    colsUsed[pc] = 1;
    rank++;
    const piv = a[pr * n + pc];
    for (let i = 0; i < m; i++) {
      if (rowsUsed[i]) continue;
      const f = a[i * n + pc] / piv;
      if (f === 0) continue;
      for (let j = 0; j < n; j++) a[i * n + j] -= f * a[pr * n + j];
    }
  }
  return rank;
}

/** Host float64 product [m, k] @ [k, n]. */
export function matmul64(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) {
    const v = a[i * k + p];
    for (let j = 0; j < n; j++) out[i * n + j] += v * b[p * n + j];
  }
  return out;
}

/** The Linear kinds of a spec's model (what targetModules may name). */
export function kindsOf(s: Spec): string[] {
  if (s.kind === 'mlp') return s.dims.slice(1).map((_, i) => `fc${i}`);
  return ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj', ...(s.kind === 'llama' ? ['gate_proj'] : [])];
}

/** Dotted names of the Linears a target spec selects, computed independently of the library. */
export function expectedTargets(model: Module, targets: TargetModules): [string, Linear][] {
  const linears = model.namedModules().filter((e): e is [string, Linear] => e[1] instanceof Linear);
  if (targets === 'all-linear') return linears.filter(([n]) => n !== 'lm_head');
  if (typeof targets === 'string' || targets instanceof RegExp) throw new Error('expectedTargets: lists only');
  return linears.filter(([n]) => targets.some((t) => n === t || n.endsWith(`.${t}`)));
}
