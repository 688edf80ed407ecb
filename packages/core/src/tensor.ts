import { getBackend, isFloatDtype, type Backend, type DType, type HostArray } from './backend.ts';
import { countReadback, countUpload, newStorage, releaseStorage, runKernel, statsOf, type Storage } from './engine.ts';
import { checkShape, fmt, sizeOf, type Shape } from './shape.ts';

export type NestedArray = number | boolean | NestedArray[];
type Axis = number | readonly number[] | null;

/** dL/d(input) given dL/d(output); called only for inputs that need a gradient. */
/**
 * One input's gradient, run only where it is needed. With `into`, the thunk can also return
 * its gradient plus the sum the tape holds so far for that input (a kernel with an addend
 * instead of a second kernel for the add).
 */
export type GradThunk = ((() => Tensor) & { into?: (acc: Tensor) => Tensor }) | null;

/** The tape node that made a tensor (autograd.ts records and runs it). */
export interface GradFn {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Builds one thunk per input; null once the graph has been freed by backward. */
  backward: ((dy: Tensor) => GradThunk[]) | null;
  /** Tensors whose values the backward reads; the tape holds each until this node has run. */
  saved: Tensor[];
}

let nextId = 0;
const scopes: Set<Tensor>[] = [];
const finalizer = new FinalizationRegistry<Storage>((storage) => releaseStorage(storage));

/**
 * An n-dimensional array on a backend, with an autograd node when it was
 * computed from tensors that require gradients.
 */
export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly size: number;
  requiresGrad = false;
  grad: Tensor | null = null;
  gradFn: GradFn | null = null;
  /** Optional label for error messages (parameters get their state-dict key). */
  name: string | undefined;
  private storageRef: Storage | null;

  private dtype_: DType;

  constructor(storage: Storage, shape: Shape, dtype: DType) {
    this.dtype_ = dtype;
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    this.storageRef = storage;
    storage.refs++;
    statsOf(storage.backend).liveTensors++;
    finalizer.register(this, storage, this);
    const scope = scopes[scopes.length - 1];
    if (scope) scope.add(this);
  }

  get backend(): Backend {
    return this.storage.backend;
  }

  /** Element type; changes only through `castTo_`. */
  get dtype(): DType {
    return this.dtype_;
  }

  get storage(): Storage {
    if (!this.storageRef) throw new Error(`Tensor ${this.describe()} was disposed`);
    return this.storageRef;
  }

  /** The backend's handle (typed array, texture, or null on meta). */
  get data_(): unknown {
    return this.storage.data;
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.storageRef === null;
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  describe(): string {
    return `${this.name ? `'${this.name}' ` : ''}${this.dtype}${fmt(this.shape)}`;
  }

  /**
   * Frees the storage now (views keep theirs alive). The graph node stays, so a
   * disposed intermediate whose values backward never reads does not break it.
   */
  dispose(): void {
    if (!this.storageRef) return;
    const storage = this.storageRef;
    this.storageRef = null;
    finalizer.unregister(this);
    statsOf(storage.backend).liveTensors--;
    releaseStorage(storage);
    for (const scope of scopes) scope.delete(this);
  }

  /** Replaces this tensor's values with another's storage (same shape), in place. */
  assign(src: Tensor): this {
    if (src.dtype !== this.dtype || src.size !== this.size) {
      throw new Error(`assign: cannot assign ${src.describe()} to ${this.describe()}`);
    }
    const from = src.backend === this.backend ? src : src.to(this.backend.name);
    const storage = from.storage;
    storage.refs++;
    releaseStorage(this.storage);
    this.storageRef = storage;
    finalizer.unregister(this);
    finalizer.register(this, storage, this);
    if (from !== src) from.dispose();
    return this;
  }

  /**
   * Moves this tensor to another backend in place, keeping its identity
   * (`Module.to` relies on it so optimizers and tied weights stay valid).
   * `w.moveTo_('meta')`
   */
  moveTo_(backendName: string): this {
    const target = getBackend(backendName);
    if (target === this.backend) return this;
    const moved = this.to(backendName);
    const storage = moved.storage;
    storage.refs++;
    statsOf(this.backend).liveTensors--;
    statsOf(target).liveTensors++;
    releaseStorage(this.storage);
    this.storageRef = storage;
    finalizer.unregister(this);
    finalizer.register(this, storage, this);
    moved.dispose();
    return this;
  }

  /**
   * Converts this tensor's values to another dtype in place, keeping its
   * identity (`Module.to({ dtype })` relies on it, so tied weights stay tied).
   * 16-bit dtypes do not train: a tensor that requires gradients cannot become one.
   * `w.requiresGrad_(false).castTo_('bfloat16')`
   */
  castTo_(dtype: DType): this {
    if (dtype === this.dtype) return this;
    if (this.requiresGrad && dtype !== 'float32') {
      throw new Error(`castTo_: ${this.describe()} requires gradients and ${dtype} tensors do not train; freeze it first (requiresGrad_(false))`);
    }
    const data = runKernel(this.backend, 'cast', this.shape, { inputs: { x: this.data_ }, attrs: { size: this.size, to: dtype } });
    const storage = newStorage(this.backend, data, this.size, dtype);
    storage.refs++;
    releaseStorage(this.storage);
    this.storageRef = storage;
    this.dtype_ = dtype;
    finalizer.unregister(this);
    finalizer.register(this, storage, this);
    return this;
  }

  /** Adopts a fresh backend storage in place (optimizer updates). */
  setStorageData(data: unknown): void {
    const old = this.storage;
    const storage = newStorage(old.backend, data, this.size, this.dtype);
    storage.refs++;
    releaseStorage(old);
    this.storageRef = storage;
    finalizer.unregister(this);
    finalizer.register(this, storage, this);
  }

  /** Flat values, read back from the backend. Throws on a backend that reads back only asynchronously (use `await t.data()`). */
  dataSync(): HostArray {
    return this.readSync('dataSync()', 'await t.data()');
  }

  /**
   * Flat values, read back asynchronously: the reader that works on every
   * backend (on WebGPU the only one).
   * @example const values = await loss.data();
   */
  async data(): Promise<HostArray> {
    const b = this.backend;
    if (!b.hasStorage) throw new Error(`data: ${this.describe()} lives on the '${b.name}' backend, which holds no values`);
    countReadback(b);
    // NOTE: the read is issued before the first await, so a dispose() after this call cannot free the storage under it.
    return b.downloadAsync ? b.downloadAsync(this.storage.data, this.dtype, this.size) : b.download(this.storage.data, this.dtype, this.size);
  }

  /** Nested arrays like `tensor.tolist()` in PyTorch. */
  toArray(): NestedArray {
    return this.nest(this.readSync('toArray()', 'await t.array()'));
  }

  /**
   * Nested arrays, read back asynchronously. @example const rows = await logits.array();
   */
  async array(): Promise<NestedArray> {
    return this.nest(await this.data());
  }

  item(): number {
    this.checkScalar('item');
    return this.readSync('item()', 'await t.itemAsync()')[0];
  }

  /**
   * The single value, read back asynchronously. @example const l = await loss.itemAsync();
   */
  async itemAsync(): Promise<number> {
    this.checkScalar('itemAsync');
    return (await this.data())[0];
  }

  private checkScalar(op: string): void {
    if (this.size !== 1) throw new Error(`${op}: expected a tensor with one element, got ${this.describe()}`);
  }

  private readSync(reader: string, asyncReader: string): HostArray {
    const b = this.backend;
    if (!b.hasStorage) throw new Error(`dataSync: ${this.describe()} lives on the '${b.name}' backend, which holds no values`);
    if (b.syncReadback === false) {
      throw new Error(`${reader}: the '${b.name}' backend (${b.mode}) reads back only asynchronously; use ${asyncReader} for ${this.describe()}`);
    }
    countReadback(b);
    return b.download(this.storage.data, this.dtype, this.size);
  }

  private nest(flat: HostArray): NestedArray {
    if (this.rank === 0) return flat[0];
    const build = (axis: number, offset: number): NestedArray[] => {
      const n = this.shape[axis];
      const stride = sizeOf(this.shape.slice(axis + 1));
      const out: NestedArray[] = [];
      for (let i = 0; i < n; i++) {
        out.push(axis === this.rank - 1 ? flat[offset + i] : build(axis + 1, offset + i * stride));
      }
      return out;
    };
    return build(0, 0);
  }

  /** Copies to another backend: `t.to('gpu')`. Returns this when already there. */
  to(backendName: string): Tensor {
    const target = getBackend(backendName);
    if (target === this.backend) return this;
    if (target.hasStorage && !this.backend.hasStorage) {
      throw new Error(`to: ${this.describe()} lives on the '${this.backend.name}' backend and holds no values to copy to '${backendName}'`);
    }
    const out = target.hasStorage && this.backend.hasStorage
      ? fromHost(this.dataSync(), this.shape, this.dtype, target)
      : fromHost(null, this.shape, this.dtype, target);
    out.requiresGrad = this.requiresGrad && this.isLeaf;
    return out;
  }

  /** A new leaf sharing storage, cut from the graph. */
  detach(): Tensor {
    const out = new Tensor(this.storage, this.shape, this.dtype);
    out.name = this.name;
    return out;
  }

  /** Sets requiresGrad in place: `w.requiresGrad_(false)` freezes a weight. */
  requiresGrad_(flag = true): this {
    if (flag && this.dtype !== 'float32') throw new Error(`requiresGrad_: only float32 tensors can require gradients, got ${this.describe()}`);
    if (!this.isLeaf && !flag) throw new Error(`requiresGrad_: cannot freeze non-leaf ${this.describe()}; use detach()`);
    this.requiresGrad = flag;
    return this;
  }

  toString(): string {
    return this.backend.hasStorage && this.size <= 64
      ? `Tensor(${this.describe()}, ${JSON.stringify(this.toArray())})`
      : `Tensor(${this.describe()})`;
  }
}

/**
 * Method sugar, installed by the op layer (ops/methods.ts) and by autograd
 * (`backward`), so that this file imports no op (TensorFlow.js core does the same).
 */
export interface Tensor {
  backward(grad?: Tensor): void;
  clone(): Tensor;
  add(b: Tensor | number): Tensor;
  sub(b: Tensor | number): Tensor;
  mul(b: Tensor | number): Tensor;
  div(b: Tensor | number): Tensor;
  pow(e: Tensor | number): Tensor;
  neg(): Tensor;
  sqrt(): Tensor;
  exp(): Tensor;
  log(): Tensor;
  tanh(): Tensor;
  sigmoid(): Tensor;
  relu(): Tensor;
  gelu(): Tensor;
  silu(): Tensor;
  matmul(b: Tensor, opts?: { transposeA?: boolean; transposeB?: boolean }): Tensor;
  sum(axis?: Axis, keepdim?: boolean): Tensor;
  cumsum(axis: number): Tensor;
  mean(axis?: Axis, keepdim?: boolean): Tensor;
  max(axis?: Axis, keepdim?: boolean): Tensor;
  min(axis?: Axis, keepdim?: boolean): Tensor;
  clamp(min?: number | null, max?: number | null): Tensor;
  var(axis?: Axis, keepdim?: boolean, unbiased?: boolean): Tensor;
  reshape(shape: readonly number[]): Tensor;
  view(shape: readonly number[]): Tensor;
  flatten(): Tensor;
  transpose(axis0?: number, axis1?: number): Tensor;
  permute(perm: readonly number[]): Tensor;
  expand(shape: readonly number[]): Tensor;
  narrow(axis: number, start: number, length: number): Tensor;
  softmax(axis?: number): Tensor;
  logSoftmax(axis?: number): Tensor;
  maskedFill(mask: Tensor, value: number): Tensor;
  toFloat(): Tensor;
  toInt(): Tensor;
}

/** Wraps a backend handle in a tensor (ops and backends use this). */
export function makeTensor(backend: Backend, data: unknown, shape: Shape, dtype: DType): Tensor {
  return new Tensor(newStorage(backend, data, sizeOf(shape), dtype), shape, dtype);
}

/** A view: a new tensor sharing `src`'s storage with another shape. */
export function shareStorage(src: Tensor, shape: Shape): Tensor {
  return new Tensor(src.storage, shape, src.dtype);
}

function fromHost(values: ArrayLike<number> | null, shape: Shape, dtype: DType, backend: Backend): Tensor {
  if (!backend.hasStorage || values === null) return makeTensor(backend, null, shape, dtype);
  countUpload(backend);
  return makeTensor(backend, backend.upload(values, dtype), shape, dtype);
}

export interface TensorOptions {
  shape?: readonly number[];
  dtype?: DType;
  requiresGrad?: boolean;
  backend?: string;
}

/**
 * Makes a tensor from nested arrays, a typed array or a number.
 * `tensor([[1, 2], [3, 4]], { requiresGrad: true })`
 */
export function tensor(values: NestedArray | ArrayLike<number>, opts: TensorOptions = {}): Tensor {
  const { flat, shape: inferred } = flatten(values);
  const shape = opts.shape ? [...opts.shape] : inferred;
  checkShape('tensor', shape);
  if (sizeOf(shape) !== flat.length) {
    throw new Error(`tensor: ${flat.length} values do not fill shape ${fmt(shape)}`);
  }
  const dtype = opts.dtype ?? (values instanceof Int32Array ? 'int32' : 'float32');
  if (!isFloatDtype(dtype)) {
    for (let i = 0; i < flat.length; i++) {
      if (!Number.isInteger(flat[i])) throw new Error(`tensor: ${dtype} value ${flat[i]} at flat index ${i} is not an integer`);
    }
  }
  const t = fromHost(flat, shape, dtype, getBackend(opts.backend));
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

function flatten(values: NestedArray | ArrayLike<number>): { flat: ArrayLike<number>; shape: number[] } {
  if (typeof values === 'number') return { flat: [values], shape: [] };
  if (typeof values === 'boolean') return { flat: [values ? 1 : 0], shape: [] };
  if (ArrayBuffer.isView(values)) return { flat: values as ArrayLike<number>, shape: [(values as ArrayLike<number>).length] };
  const shape: number[] = [];
  let probe: unknown = values;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const flat: number[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (typeof v === 'boolean') flat.push(v ? 1 : 0);
      else if (typeof v === 'number') flat.push(v);
      else throw new Error(`tensor: expected a number at depth ${depth}, got ${typeof v}`);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) throw new Error(`tensor: ragged nested array at depth ${depth}`);
    for (const x of v) walk(x, depth + 1);
  };
  walk(values, 0);
  return { flat, shape };
}

export function scalar(value: number, opts: Omit<TensorOptions, 'shape'> = {}): Tensor {
  return tensor(value, opts);
}

export function full(shape: readonly number[], value: number, opts: Omit<TensorOptions, 'shape'> = {}): Tensor {
  checkShape('full', shape);
  const backend = getBackend(opts.backend);
  const dtype = opts.dtype ?? 'float32';
  const t = makeTensor(backend, backend.hasStorage ? backend.fill({ inputs: {}, attrs: { size: sizeOf(shape), value, dtype } }) : null, shape, dtype);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

export function zeros(shape: readonly number[], opts: Omit<TensorOptions, 'shape'> = {}): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: readonly number[], opts: Omit<TensorOptions, 'shape'> = {}): Tensor {
  return full(shape, 1, opts);
}

/**
 * Runs fn collecting the tensors it makes; `end(made, returned)` decides their
 * fate (tidy disposes, the tape's scope releases); what is still alive joins the
 * enclosing scope. On a throw nothing is returned: `end` sees an empty set.
 */
export function collectScope<T>(fn: () => T, end: (made: Set<Tensor>, returned: Set<Tensor>) => void): T {
  const made = new Set<Tensor>();
  scopes.push(made);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    end(made, new Set());
    adoptSurvivors(made);
    throw err;
  }
  scopes.pop();
  const returned = new Set<Tensor>();
  collectTensors(result, returned);
  end(made, returned);
  adoptSurvivors(made);
  return result;
}

function adoptSurvivors(made: Set<Tensor>): void {
  const parent = scopes[scopes.length - 1];
  if (parent) for (const t of made) if (!t.isDisposed) parent.add(t);
}

/** Runs fn, then disposes every tensor it made except those it returns (TensorFlow.js `tidy`). */
export function tidy<T>(fn: () => T): T {
  return collectScope(fn, (made, returned) => {
    for (const t of made) if (!returned.has(t)) t.dispose();
  });
}

/** Takes a tensor out of every `tidy` scope, so it outlives them. */
export function keep<T extends Tensor>(t: T): T {
  for (const scope of scopes) scope.delete(t);
  return t;
}

export function dispose(x: unknown): void {
  const found = new Set<Tensor>();
  collectTensors(x, found);
  for (const t of found) t.dispose();
}

function collectTensors(x: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 4 || x === null || typeof x !== 'object') return;
  if (x instanceof Tensor) {
    out.add(x);
    return;
  }
  if (Array.isArray(x)) {
    for (const v of x) collectTensors(v, out, depth + 1);
    return;
  }
  if (x instanceof Map) {
    for (const v of x.values()) collectTensors(v, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(x) === Object.prototype) {
    for (const v of Object.values(x)) collectTensors(v, out, depth + 1);
  }
}

/** Live/peak bytes, live tensors, kernel launches and readbacks of a backend. */
export function memory(backendName?: string): ReturnType<typeof statsOf> {
  return { ...statsOf(getBackend(backendName)) };
}

/** Restarts peak tracking from the current live bytes. */
export function resetPeak(backendName?: string): void {
  const s = statsOf(getBackend(backendName));
  s.peakBytes = s.liveBytes;
}
