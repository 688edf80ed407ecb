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

/**
 * The primitive kernel set every backend implements. `D` is the backend's
 * storage handle (a typed array on cpu, a texture on gpu, nothing on meta).
 * Kernels never mutate their inputs, except `adamUpdate`, which may update
 * p/m/v in place and returns the storages to keep.
 */
export interface Kernels<D = unknown> {
  fill(size: number, value: number, dtype: DType): D;
  cast(x: D, size: number, to: DType): D;
  unary(op: UnaryOp, x: D, size: number): D;
  /** dL/dx of a unary op, from its input x and/or output y. */
  unaryGrad(op: UnaryOp, x: D | null, y: D | null, dy: D, size: number): D;
  /** x * scale + shift. */
  affine(x: D, size: number, scale: number, shift: number): D;
  powScalar(x: D, size: number, exponent: number): D;
  binary(op: BinaryOp, a: D, aShape: Shape, b: D, bShape: Shape, outShape: Shape): D;
  where(cond: D, cShape: Shape, a: D, aShape: Shape, b: D, bShape: Shape, outShape: Shape): D;
  /** Reduces `axes` (sorted, unique) away; the output is row-major over the kept axes. */
  reduce(op: ReduceOp, x: D, shape: Shape, axes: readonly number[]): D;
  /**
   * Batched op(a) @ op(b); batch dims broadcast; transposes read in place, never
   * copied. A bias (length = the output's last dim) is added to every row: a
   * Linear layer in one kernel.
   */
  matmul(a: D, aShape: Shape, b: D, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape, bias?: D | null): D;
  /** out[i] = x[offset + sum(i_k * strides_k)] over outShape: transpose, permute, slice, expand. */
  strided(x: D, outShape: Shape, strides: readonly number[], offset: number): D;
  /** The adjoint of `strided`: zeros(outSize), then out[offset + sum(i_k * strides_k)] += dy[i]. */
  stridedAdd(dy: D, dyShape: Shape, strides: readonly number[], offset: number, outSize: number): D;
  concat(xs: readonly D[], shapes: readonly Shape[], axis: number, outShape: Shape): D;
  gather(x: D, xShape: Shape, index: D, indexShape: Shape, axis: number): D;
  scatterAdd(dy: D, index: D, indexShape: Shape, axis: number, outShape: Shape): D;
  indexSelect(x: D, xShape: Shape, index: D, count: number, axis: number): D;
  indexAdd(dy: D, index: D, count: number, axis: number, xShape: Shape): D;
  /** Row-wise (last axis) softmax or logSoftmax, max-subtracted. */
  softmax(x: D, rows: number, cols: number, log: boolean): D;
  softmaxGrad(y: D, dy: D, rows: number, cols: number, log: boolean): D;
  /** Fused logSoftmax + NLL over rows; a single value. */
  crossEntropy(logits: D, targets: D, rows: number, cols: number, ignoreIndex: number, reduction: Reduction): D;
  crossEntropyGrad(logits: D, targets: D, dy: D, rows: number, cols: number, ignoreIndex: number, reduction: Reduction): D;
  layerNorm(x: D, w: D | null, b: D | null, rows: number, cols: number, eps: number): { y: D; mean: D; rstd: D };
  layerNormGrad(
    x: D, w: D | null, mean: D, rstd: D, dy: D, rows: number, cols: number,
    need: { x: boolean; w: boolean; b: boolean },
  ): { dx: D | null; dw: D | null; db: D | null };
  rmsNorm(x: D, w: D | null, rows: number, cols: number, eps: number): { y: D; rstd: D };
  rmsNormGrad(
    x: D, w: D | null, rstd: D, dy: D, rows: number, cols: number, need: { x: boolean; w: boolean },
  ): { dx: D | null; dw: D | null };
  /** Scaled dot-product attention over bh = batch*heads; a causal query i sees keys j <= i + (tk - tq). */
  attention(
    q: D, k: D, v: D, bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean,
  ): { out: D; lse: D };
  attentionGrad(
    q: D, k: D, v: D, out: D, lse: D, dout: D,
    bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean,
    need: { q: boolean; k: boolean; v: boolean },
  ): { dq: D | null; dk: D | null; dv: D | null };
  /** One Adam/AdamW update; returns the storages that now hold p, m and v. */
  adamUpdate(p: D, g: D, m: D, v: D, size: number, h: AdamHyper): { p: D; m: D; v: D };
}

export type KernelName = keyof Kernels;

export interface Backend extends Kernels {
  readonly name: string;
  /** What actually runs: 'cpu', 'cpu-float64', 'meta', or a gpu.js mode. */
  readonly mode: string;
  /** false for `meta`: shapes only. */
  readonly hasStorage: boolean;
  upload(values: ArrayLike<number>, dtype: DType): unknown;
  download(data: unknown, dtype: DType, size: number): HostArray;
  /** An asynchronous readback (`await t.data()`); absent: `download`. */
  downloadAsync?(data: unknown, dtype: DType, size: number): Promise<HostArray>;
  /** false where values come back only asynchronously (WebGPU): the synchronous readers throw, naming the async one. */
  readonly syncReadback?: boolean;
  free(data: unknown): void;
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
