import type { Shape } from './shape.ts';

/**
 * Element types. `bfloat16` and `float16` are storage types for tensors that
 * do not train (a frozen base model's weights): matmul reads them as its B
 * operand and embedding lookups widen their rows; other ops want float32.
 */
export type DType = 'float32' | 'bfloat16' | 'float16' | 'int32' | 'bool';
export type HalfDType = 'bfloat16' | 'float16';

export function isHalfDtype(d: DType): d is HalfDType {
  return d === 'bfloat16' || d === 'float16';
}

/** float32, bfloat16 or float16 (as opposed to int32 and bool). */
export function isFloatDtype(d: DType): boolean {
  return d === 'float32' || d === 'bfloat16' || d === 'float16';
}
export type UnaryOp = 'neg' | 'sqrt' | 'exp' | 'log' | 'tanh' | 'sigmoid' | 'relu' | 'gelu' | 'silu';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'eq' | 'gt';
export type ReduceOp = 'sum' | 'max';
export type Reduction = 'mean' | 'sum';

/** Host-side arrays a backend reads from and writes to. */
export type HostArray = Float32Array | Float64Array | Int32Array;

export interface AdamHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** true: AdamW's decoupled decay; false: Adam's L2 term added to the gradient. */
  decoupled: boolean;
}

type Need<K extends string> = { [P in K]: boolean };
/**
 * Attention sizes over bh = batch * heads. With `heads`, q, k, v, out and their gradients are
 * [B, T, heads, D] (projections viewed per head, no permute) instead of [bh, T, D]; lse stays [bh, tq].
 */
type AttnSizes = { bh: number; tq: number; tk: number; dk: number; dv: number; scale: number; causal: boolean; heads?: number };
type CeAttrs = { rows: number; cols: number; ignoreIndex: number; reduction: Reduction };
type Rows = { rows: number; cols: number };
/**
 * A matmul's low-rank epilogue (a LoRA linear in one kernel): out += scale * h @ op(w), with
 * h [M, r] and w [r, N] ([N, r] when transW); only for a 2-D output.
 */
export type LowRank = { r: number; transW: boolean; scale: number };

/**
 * The kernel contract, declared once: for each kernel the storages it reads
 * (`inputs`, by name), its sizes, flags and scalars (`attrs`) and what it
 * returns (`out`). `D` is a backend's storage handle (a typed array on cpu, a
 * texture on gpu, null on meta). Kernels never mutate their inputs, except
 * `adamUpdate`, which may update p/m/v in place and returns the storages to keep.
 */
export interface KernelSpecs<D> {
  fill: { inputs: Record<string, never>; attrs: { size: number; value: number; dtype: DType }; out: D };
  cast: { inputs: { x: D }; attrs: { size: number; to: DType }; out: D };
  unary: { inputs: { x: D }; attrs: { op: UnaryOp; size: number }; out: D };
  /** dL/dx of a unary op, from its input x and/or output y. */
  unaryGrad: { inputs: { x: D | null; y: D | null; dy: D }; attrs: { op: UnaryOp; size: number }; out: D };
  /** x * scale + shift. */
  affine: { inputs: { x: D }; attrs: { size: number; scale: number; shift: number }; out: D };
  powScalar: { inputs: { x: D }; attrs: { size: number; exponent: number }; out: D };
  binary: { inputs: { a: D; b: D }; attrs: { op: BinaryOp; aShape: Shape; bShape: Shape; outShape: Shape }; out: D };
  where: { inputs: { cond: D; a: D; b: D }; attrs: { cShape: Shape; aShape: Shape; bShape: Shape; outShape: Shape }; out: D };
  /** Reduces `axes` (sorted, unique) away; the output is row-major over the kept axes. */
  reduce: { inputs: { x: D }; attrs: { op: ReduceOp; shape: Shape; axes: readonly number[] }; out: D };
  /**
   * Batched op(a) @ op(b); batch dims broadcast; transposes read in place, never
   * copied. out = alpha * op(a) @ op(b) + bias + the low-rank term + addend: a bias (length = the
   * output's last dim) is added to every row, so a Linear (or a LoRA linear) is one kernel; an
   * addend of the output's shape (a residual, a gradient summed so far) saves an add.
   */
  matmul: {
    inputs: { a: D; b: D; bias?: D | null; h?: D | null; w?: D | null; addend?: D | null; at?: D | null };
    attrs: {
      aShape: Shape; bShape: Shape; transA: boolean; transB: boolean; outShape: Shape; alpha?: number; lowRank?: LowRank | null;
      /** a (not transposed) is read through GELU: gelu(u) @ W^T in one kernel. */
      aAct?: 'gelu' | null;
      /** The product times gelu'(at) (`at` of the output's shape), then + addend: dx through a GELU; no bias, alpha or low-rank term. */
      gradOf?: 'gelu' | null;
    };
    out: D;
  };
  /** out[i] = x[offset + sum(i_k * strides_k)] over outShape: transpose, permute, slice, expand. */
  strided: { inputs: { x: D }; attrs: { outShape: Shape; strides: readonly number[]; offset: number }; out: D };
  /** The adjoint of `strided`: zeros(outSize), then out[offset + sum(i_k * strides_k)] += dy[i]. */
  stridedAdd: {
    inputs: { dy: D }; attrs: { dyShape: Shape; strides: readonly number[]; offset: number; outSize: number }; out: D;
  };
  concat: { inputs: { xs: readonly D[] }; attrs: { shapes: readonly Shape[]; axis: number; outShape: Shape }; out: D };
  /** The index values are checked (checkIndices) before the kernel runs. */
  gather: { inputs: { x: D; index: D }; attrs: { xShape: Shape; indexShape: Shape; axis: number }; out: D };
  scatterAdd: { inputs: { dy: D; index: D }; attrs: { indexShape: Shape; axis: number; outShape: Shape }; out: D };
  indexSelect: { inputs: { x: D; index: D }; attrs: { xShape: Shape; count: number; axis: number }; out: D };
  indexAdd: { inputs: { dy: D; index: D }; attrs: { count: number; axis: number; xShape: Shape }; out: D };
  /** Row-wise (last axis) softmax or logSoftmax, max-subtracted. */
  softmax: { inputs: { x: D }; attrs: Rows & { log: boolean }; out: D };
  softmaxGrad: { inputs: { y: D; dy: D }; attrs: Rows & { log: boolean }; out: D };
  /** Fused logSoftmax + NLL over rows; a single value. Targets are checked (countValidTargets). */
  crossEntropy: { inputs: { logits: D; targets: D }; attrs: CeAttrs; out: D };
  crossEntropyGrad: { inputs: { logits: D; targets: D; dy: D }; attrs: CeAttrs; out: D };
  layerNorm: { inputs: { x: D; w: D | null; b: D | null }; attrs: Rows & { eps: number }; out: { y: D; mean: D; rstd: D } };
  /** `addend` (the gradient summed so far for x) is added to dx. */
  layerNormGrad: {
    inputs: { x: D; w: D | null; mean: D; rstd: D; dy: D; addend?: D | null };
    attrs: Rows & { need: Need<'x' | 'w' | 'b'> };
    out: { dx: D | null; dw: D | null; db: D | null };
  };
  rmsNorm: { inputs: { x: D; w: D | null }; attrs: Rows & { eps: number }; out: { y: D; rstd: D } };
  rmsNormGrad: {
    inputs: { x: D; w: D | null; rstd: D; dy: D; addend?: D | null }; attrs: Rows & { need: Need<'x' | 'w'> }; out: { dx: D | null; dw: D | null };
  };
  /** Scaled dot-product attention over bh = batch*heads; a causal query i sees keys j <= i + (tk - tq). */
  attention: { inputs: { q: D; k: D; v: D }; attrs: AttnSizes; out: { out: D; lse: D } };
  attentionGrad: {
    inputs: { q: D; k: D; v: D; out: D; lse: D; dout: D };
    attrs: AttnSizes & { need: Need<'q' | 'k' | 'v'> };
    out: { dq: D | null; dk: D | null; dv: D | null };
  };
  /** One Adam/AdamW update; returns the storages that now hold p, m and v. */
  adamUpdate: { inputs: { p: D; g: D; m: D; v: D }; attrs: { size: number; hyper: AdamHyper }; out: { p: D; m: D; v: D } };
}

export type KernelName = keyof KernelSpecs<unknown>;
export type KernelAttrs<K extends KernelName> = KernelSpecs<unknown>[K]['attrs'];
/** The one argument a kernel takes: `{ inputs: { x }, attrs: { rows, cols, log } }`. */
export interface KernelArgs<D, K extends KernelName> {
  inputs: KernelSpecs<D>[K]['inputs'];
  attrs: KernelAttrs<K>;
}
export type KernelOut<D, K extends KernelName> = KernelSpecs<D>[K]['out'];
// A method type (checked bivariantly, as methods are), so a backend over its own storage type is a Backend<unknown>.
type KernelMethod<A, R> = { kernel(args: A): R }['kernel'];

/** Every kernel of the contract, over storage `D`: a backend missing one, or taking other names, does not compile. */
export type Kernels<D = unknown> = { [K in KernelName]: KernelMethod<KernelArgs<D, K>, KernelOut<D, K>> };

export interface Backend<S = unknown> extends Kernels<S> {
  readonly name: string;
  /** What actually runs: 'cpu', 'cpu-float64', 'meta', or a gpu.js mode. */
  readonly mode: string;
  /** false for `meta`: shapes only. */
  readonly hasStorage: boolean;
  upload(values: ArrayLike<number>, dtype: DType): S;
  download(data: S, dtype: DType, size: number): HostArray;
  /** An asynchronous readback (`await t.data()`); absent: `download`. */
  downloadAsync?(data: S, dtype: DType, size: number): Promise<HostArray>;
  /** false where values come back only asynchronously (WebGPU): the synchronous readers throw, naming the async one. */
  readonly syncReadback?: boolean;
  free(data: S): void;
  /** Bytes one element takes in this backend's storage. */
  bytesPerElement(dtype: DType): number;
}

const registry = new Map<string, Backend | (() => Backend)>();
const loaders = new Map<string, () => Promise<unknown>>();
let defaultName = 'cpu';

export interface RegisterBackendOptions {
  /** Loads what the factory needs (e.g. gpu.js), for `initBackend`; the factory may then run synchronously. */
  load?: () => Promise<unknown>;
}

/** Registers a backend (or a lazy factory) under a name: `registerBackend('cpu', () => new CpuBackend())`. */
export function registerBackend(name: string, backend: Backend | (() => Backend), opts: RegisterBackendOptions = {}): void {
  registry.set(name, backend);
  if (opts.load) loaders.set(name, opts.load);
  else loaders.delete(name);
}

/**
 * Loads a backend's code if needed (gpu.js for 'gpu') and returns the backend;
 * browsers call this before the first synchronous `getBackend('gpu')`.
 *
 * @example const gpu = await initBackend('gpu'); console.log(gpu.mode); // 'webgl2'
 */
export async function initBackend(name?: string): Promise<Backend> {
  const key = name ?? defaultName;
  await loaders.get(key)?.();
  return getBackend(key);
}

export function getBackend(name?: string): Backend {
  const key = name ?? defaultName;
  const entry = registry.get(key);
  if (!entry) {
    throw new Error(`getBackend: no backend named '${key}' (registered: ${[...registry.keys()].join(', ')})`);
  }
  if (typeof entry === 'function') {
    const made = entry();
    registry.set(key, made);
    return made;
  }
  return entry;
}

/** Makes new tensors land on this backend: `setDefaultBackend('gpu')`. */
export function setDefaultBackend(name: string): void {
  getBackend(name);
  defaultName = name;
}

export function getDefaultBackendName(): string {
  return defaultName;
}

export function listBackends(): string[] {
  return [...registry.keys()];
}
