import {
  isHalfDtype, type Backend, type BinaryOp, type DType, type HostArray, type KernelArgs, type KernelAttrs, type KernelName,
  type UnaryOp,
} from '../../backend.ts';
import { checkIndices } from '../checks.ts';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../../shape.ts';
import { allocFor, forEachRow, type Arr, type FArr, type FloatCtor } from './arrays.ts';
import { batchedProduct } from './gemm.ts';
import { geluGradWasm, geluWasm } from './wasm-activations.ts';
import { gelu, geluGrad, geluInto } from './gelu.ts';
import { disposeThreads, getNumThreads } from './threads.ts';
import { BF16Array, F16Array, isHalf, toHalf, widen, widenInto, type HalfArr } from './half.ts';
import { arenaArray, arenaFree } from './arena.ts';
import * as nn from './nn-kernels.ts';
import * as attn from './attention.ts';
import { runRows } from './rows.ts';

/** The binary ops the row kernels run (binaryElements' op codes). */
/** A kernel's argument over float arrays (and int32 indices/targets where the contract says index/targets). */
type Args<K extends KernelName, D = FArr> = KernelArgs<D, K>;

const ARITH_CODES: Partial<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };

/** Arrays below this many elements are left to the garbage collector. */
const POOL_MIN_LENGTH = 4096;
/** float32 and int32 storage from this many elements lives in the shared wasm memory (see arena.ts). */
const ARENA_MIN_LENGTH = 256;
const POOL_MAX_BYTES = 256 * 2 ** 20;

/**
 * torch.gather's addressing: the flat offset in x (strides xs) of index
 * position i (strides is), with its coordinate on `axis` replaced by `j`.
 */
function alongAxisOffset(i: number, j: number, is: readonly number[], xs: readonly number[], axis: number): number {
  let offset = 0;
  let rem = i;
  for (let d = 0; d < is.length; d++) {
    const c = Math.floor(rem / is[d]);
    rem -= c * is[d];
    offset += (d === axis ? j : c) * xs[d];
  }
  return offset;
}

/** The last four entries of `v`, padded in front with `fill`. */
function pad4(v: readonly number[], fill: number): [number, number, number, number] {
  const out: [number, number, number, number] = [fill, fill, fill, fill];
  for (let i = 0; i < v.length; i++) out[4 - v.length + i] = v[i];
  return out;
}

/** Whether `inner` equals the trailing axes of `outer` (ignoring leading 1s). */
function isSuffix(inner: Shape, outer: Shape): boolean {
  let i = inner.length - 1;
  let o = outer.length - 1;
  for (; i >= 0; i--, o--) {
    if (o < 0) return inner[i] === 1;
    if (inner[i] !== outer[o]) return i >= 0 && inner.slice(0, i + 1).every((d) => d === 1);
  }
  return true;
}

function sigmoid(x: number): number {
  // NOTE: stable for large |x|: never exponentiate a large positive number.
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

const unaryFns: Record<UnaryOp, (x: number) => number> = {
  neg: (x) => -x,
  sqrt: Math.sqrt,
  exp: Math.exp,
  log: Math.log,
  tanh: Math.tanh,
  sigmoid,
  // NOTE: NaN propagates, as in PyTorch (a plain `x > 0 ? x : 0` maps NaN to 0).
  relu: (x) => (x > 0 || x !== x ? x : 0),
  gelu,
  silu: (x) => x * sigmoid(x),
};

/** dy * f'(.), given the input x or the output y. */
const unaryGradFns: Record<UnaryOp, (x: number, y: number, dy: number) => number> = {
  neg: (_x, _y, dy) => -dy,
  sqrt: (_x, y, dy) => dy / (2 * y),
  exp: (_x, y, dy) => dy * y,
  log: (x, _y, dy) => dy / x,
  tanh: (_x, y, dy) => dy * (1 - y * y),
  sigmoid: (_x, y, dy) => dy * y * (1 - y),
  // PyTorch's threshold_backward: the gradient passes unless x <= 0 (so it passes at NaN).
  relu: (x, _y, dy) => (x <= 0 ? 0 : dy),
  gelu: (x, _y, dy) => dy * geluGrad(x),
  silu: (x, _y, dy) => {
    const s = sigmoid(x);
    return dy * s * (1 + x * (1 - s));
  },
};

const binaryFns: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: Math.pow,
  // NaN in either operand gives NaN, as torch.maximum.
  maximum: (a, b) => (a >= b || a !== a ? a : b),
  eq: (a, b) => (a === b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
};

/**
 * The reference backend: pure TypeScript on typed arrays. With
 * `precision: 'float64'` it computes in doubles (used by gradcheck).
 */
export class CpuBackend implements Backend<Arr> {
  readonly hasStorage = true;
  readonly mode: string;
  private readonly F: FloatCtor;
  private readonly pool = new Map<number, FArr[]>();
  private pooledBytes = 0;
  /** Arrays `alloc` handed out (poolable sizes only): `free` takes back these and nothing else. */
  private readonly issued = new WeakSet<FArr>();

  constructor(readonly name = 'cpu', precision: 'float32' | 'float64' = 'float32') {
    this.F = precision === 'float64' ? Float64Array : Float32Array;
    this.mode = precision === 'float64' ? 'cpu-float64' : 'cpu';
  }

  /** Threads the kernels use (the pool's count; 1 where the platform has no workers or shared memory). */
  get threads(): number {
    return this.F === Float32Array ? getNumThreads() : 1;
  }

  /**
   * Ends the worker threads (every cpu backend shares one pool; the next
   * parallel kernel starts them again) and drops the recycled arrays.
   */
  dispose(): void {
    disposeThreads();
    this.pool.clear();
    this.pooledBytes = 0;
  }

  bytesPerElement(dtype: DType): number {
    if (dtype === 'float32') return this.F.BYTES_PER_ELEMENT;
    return isHalfDtype(dtype) ? 2 : 4;
  }

  upload(values: ArrayLike<number>, dtype: DType): Arr {
    if (isHalfDtype(dtype)) return toHalf(dtype, values, values.length, this.allocHalf(dtype, values.length));
    const out = this.allocDtype(dtype, values.length);
    out.set(values);
    return out;
  }

  /** Float storage comes from the arena or the pool (so that what `free` keeps is reused); int storage from the arena or fresh. */
  private readonly allocDtype = (dtype: DType, n: number): Arr => {
    if (dtype === 'float32') return this.alloc(n);
    if (dtype === 'int32' && n >= ARENA_MIN_LENGTH) return arenaArray(Int32Array, n) ?? new Int32Array(n);
    return allocFor(this.F, dtype, n);
  };

  /** Zeroed 16-bit storage: in the shared memory when large (the gemm then reads a 16-bit weight in place). */
  private allocHalf(dtype: 'bfloat16' | 'float16', n: number): HalfArr {
    const C = dtype === 'bfloat16' ? BF16Array : F16Array;
    return (n >= ARENA_MIN_LENGTH ? arenaArray(C, n) : null) ?? new C(n);
  }

  /** A 16-bit storage reads back widened to float32. */
  download(data: unknown, _dtype: DType, size: number): HostArray {
    if (isHalf(data)) return widen(data, size);
    return (data as FArr | Int32Array).slice(0, size);
  }

  /**
   * Keeps large float arrays for reuse: a training step frees and allocates
   * the same sizes every step, and recycling them spares V8 the full garbage
   * collections that fresh ArrayBuffers trigger. Only arrays this pool handed
   * out come back: pooling fresh ones (that no alloc ever took from the pool)
   * grew the pool, and RSS, by their size every step until the cap.
   */
  free(data: unknown): void {
    if ((data instanceof Float32Array || data instanceof Int32Array || data instanceof Uint16Array) && arenaFree(data)) return;
    if (!(data instanceof this.F) || !this.issued.has(data)) return;
    this.issued.delete(data);
    if (this.pooledBytes + data.byteLength > POOL_MAX_BYTES) return;
    const list = this.pool.get(data.length);
    if (list) list.push(data);
    else this.pool.set(data.length, [data]);
    this.pooledBytes += data.byteLength;
  }

  /** A zeroed float array of n elements, recycled when one of that length was freed. */
  readonly alloc = (n: number): FArr => {
    if (n >= ARENA_MIN_LENGTH && this.F === Float32Array) {
      const shared = arenaArray(Float32Array, n);
      if (shared) return shared;
    }
    if (n < POOL_MIN_LENGTH) return new this.F(n);
    let out = this.pool.get(n)?.pop();
    if (out) {
      this.pooledBytes -= out.byteLength;
      out.fill(0);
    } else {
      out = new this.F(n);
    }
    this.issued.add(out);
    return out;
  };

  fill({ attrs: { size, value, dtype } }: Args<'fill'>): Arr {
    if (isHalfDtype(dtype)) {
      const half = this.allocHalf(dtype, size);
      if (value !== 0) half.fill(toHalf(dtype, [value])[0]);
      return half;
    }
    const out = this.allocDtype(dtype, size);
    if (value !== 0) out.fill(value);
    return out;
  }

  cast({ inputs: { x }, attrs: { size, to } }: Args<'cast', Arr>): Arr {
    if (isHalfDtype(to)) {
      if (isHalf(x) && (to === 'bfloat16') === x instanceof BF16Array) return x.slice(0, size);
      return toHalf(to, isHalf(x) ? widen(x, size) : x, size, this.allocHalf(to, size));
    }
    if (isHalf(x)) {
      const wide = widen(x, size);
      return to === 'float32' ? (this.F === Float32Array ? wide : Float64Array.from(wide)) : this.cast({ inputs: { x: wide }, attrs: { size, to } });
    }
    const out = this.allocDtype(to, size);
    if (to === 'bool') for (let i = 0; i < size; i++) out[i] = x[i] !== 0 ? 1 : 0;
    else if (to === 'float32' || x instanceof Int32Array) out.set(x.subarray(0, size));
    else for (let i = 0; i < size; i++) out[i] = Math.trunc(x[i]);
    return out;
  }

  unary({ inputs: { x }, attrs: { op, size } }: Args<'unary'>): FArr {
    const out = this.alloc(size);
    // The hot activations get loops of their own: a call through the table per element is several times slower.
    if (op === 'gelu') {
      if (x instanceof Float32Array && out instanceof Float32Array && geluWasm(x.subarray(0, size), out)) return out;
      geluInto(x, out, size);
      return out;
    }
    if (op === 'silu') {
      nn.siluInto(x, out, size);
      return out;
    }
    const f = unaryFns[op];
    for (let i = 0; i < size; i++) out[i] = f(x[i]);
    return out;
  }

  unaryGrad({ inputs: { x, y, dy }, attrs: { op, size } }: Args<'unaryGrad'>): FArr {
    const out = this.alloc(size);
    if (op === 'gelu' && x) {
      if (x instanceof Float32Array && dy instanceof Float32Array && out instanceof Float32Array
        && geluGradWasm(x.subarray(0, size), dy, out)) return out;
      for (let i = 0; i < size; i++) out[i] = dy[i] * geluGrad(x[i]);
      return out;
    }
    if (op === 'silu' && x) {
      nn.siluGradInto(x, dy, out, size);
      return out;
    }
    const f = unaryGradFns[op];
    for (let i = 0; i < size; i++) out[i] = f(x ? x[i] : 0, y ? y[i] : 0, dy[i]);
    return out;
  }

  affine({ inputs: { x }, attrs: { size, scale, shift } }: Args<'affine'>): FArr {
    const out = this.alloc(size);
    for (let i = 0; i < size; i++) out[i] = x[i] * scale + shift;
    return out;
  }

  powScalar({ inputs: { x }, attrs: { size, exponent } }: Args<'powScalar'>): FArr {
    const out = this.alloc(size);
    if (exponent === 2) for (let i = 0; i < size; i++) out[i] = x[i] * x[i];
    else for (let i = 0; i < size; i++) out[i] = Math.pow(x[i], exponent);
    return out;
  }

  binary({ inputs: { a, b }, attrs: { op, aShape, bShape, outShape } }: Args<'binary'>): FArr {
    const n = sizeOf(outShape);
    const out = this.alloc(n);
    const f = binaryFns[op];
    const an = sizeOf(aShape);
    const bn = sizeOf(bShape);
    const code = ARITH_CODES[op];
    if (an === n && bn === n) {
      if (code !== undefined) runRows(op, 'binaryElements', [a, b, out], [code], n, n);
      else for (let i = 0; i < n; i++) out[i] = f(a[i], b[i]);
      return out;
    }
    if (bn === 1 && an === n) {
      const bv = b[0];
      for (let i = 0; i < n; i++) out[i] = f(a[i], bv);
      return out;
    }
    if (an === n && isSuffix(bShape, outShape)) {
      // A bias-like operand repeated over leading axes: [N, C] + [C].
      if (code !== undefined) {
        runRows(op, 'binaryRowsBias', [a, b, out], [bn, code], n / bn, n);
        return out;
      }
      for (let o = 0; o < n; o += bn) {
        if (op === 'add') for (let c = 0; c < bn; c++) out[o + c] = a[o + c] + b[c];
        else if (op === 'mul') for (let c = 0; c < bn; c++) out[o + c] = a[o + c] * b[c];
        else for (let c = 0; c < bn; c++) out[o + c] = f(a[o + c], b[c]);
      }
      return out;
    }
    const sa = broadcastStrides(aShape, outShape);
    const sb = broadcastStrides(bShape, outShape);
    const cols = outShape[outShape.length - 1] ?? 1;
    const ca = sa[sa.length - 1] ?? 0;
    const cb = sb[sb.length - 1] ?? 0;
    forEachRow(outShape, [sa, sb], (row, [oa, ob]) => {
      const o = row * cols;
      if (op === 'add') for (let c = 0; c < cols; c++) out[o + c] = a[oa + c * ca] + b[ob + c * cb];
      else if (op === 'mul') for (let c = 0; c < cols; c++) out[o + c] = a[oa + c * ca] * b[ob + c * cb];
      else for (let c = 0; c < cols; c++) out[o + c] = f(a[oa + c * ca], b[ob + c * cb]);
    });
    return out;
  }

  where({ inputs: { cond, a, b }, attrs: { cShape, aShape, bShape, outShape } }: Args<'where'>): FArr {
    const out = this.alloc(sizeOf(outShape));
    const ss = [cShape, aShape, bShape].map((s) => broadcastStrides(s, outShape));
    const cols = outShape[outShape.length - 1] ?? 1;
    const last = ss.map((s) => s[s.length - 1] ?? 0);
    forEachRow(outShape, ss, (row, [oc, oa, ob]) => {
      const o = row * cols;
      for (let c = 0; c < cols; c++) out[o + c] = cond[oc + c * last[0]] ? a[oa + c * last[1]] : b[ob + c * last[2]];
    });
    return out;
  }

  reduce({ inputs: { x }, attrs: { op, shape, axes } }: Args<'reduce'>): FArr {
    const keptShape = shape.filter((_, i) => !axes.includes(i));
    const out = this.alloc(sizeOf(keptShape));
    const init = op === 'sum' ? 0 : -Infinity;
    out.fill(init);
    const rank = shape.length;
    const n = sizeOf(shape);
    if (n === 0) return out;
    // Fast path: reducing the trailing axes (row sums / row maxima).
    const trailing = axes.every((a, i) => a === rank - axes.length + i);
    if (trailing) {
      const cols = sizeOf(axes.map((a) => shape[a]));
      if (op === 'sum') {
        runRows('reduce', 'sumTrailingRows', [x, out], [cols], out.length, n);
        return out;
      }
      for (let r = 0; r < out.length; r++) {
        let acc = init;
        const o = r * cols;
        for (let c = 0; c < cols; c++) if (x[o + c] > acc || x[o + c] !== x[o + c]) acc = x[o + c];
        out[r] = acc;
      }
      return out;
    }
    const leading = axes.every((a, i) => a === i);
    if (leading) {
      // Reducing the leading axes (a bias gradient): accumulate whole rows.
      const cols = out.length;
      const rows = n / cols;
      if (op === 'sum') {
        // Split by columns: each column's sum keeps its row order on any thread count.
        runRows('reduce', 'sumLeadingCols', [x, out], [cols, rows], cols, n);
        return out;
      }
      for (let r = 0; r < rows; r++) {
        const o = r * cols;
        for (let c = 0; c < cols; c++) if (x[o + c] > out[c] || x[o + c] !== x[o + c]) out[c] = x[o + c];
      }
      return out;
    }
    // General: walk the input, mapping each row onto the output.
    const outStridesKept = stridesOf(keptShape);
    const outStrides = new Array<number>(rank).fill(0);
    let k = 0;
    for (let i = 0; i < rank; i++) if (!axes.includes(i)) outStrides[i] = outStridesKept[k++];
    const cols = shape[rank - 1];
    const co = outStrides[rank - 1];
    forEachRow(shape, [outStrides], (row, [oo]) => {
      const xi = row * cols;
      if (op === 'sum') for (let c = 0; c < cols; c++) out[oo + c * co] += x[xi + c];
      else for (let c = 0; c < cols; c++) if (x[xi + c] > out[oo + c * co] || x[xi + c] !== x[xi + c]) out[oo + c * co] = x[xi + c];
    });
    return out;
  }

  private readonly batched: attn.BatchedMatmul = (a, aShape, b, bShape, ta, tb, out) =>
    batchedProduct(this.alloc, a, aShape, b, bShape, ta, tb, out);

  matmul({ inputs: { a, b, bias }, attrs: { aShape, bShape, transA, transB, outShape } }: Args<'matmul', FArr | HalfArr>): FArr {
    const out = batchedProduct(this.alloc, a, aShape, b, bShape, transA, transB, outShape);
    if (bias) {
      const n = outShape[outShape.length - 1];
      for (let o = 0; o < out.length; o += n) for (let c = 0; c < n; c++) out[o + c] += bias[c];
    }
    return out;
  }

  strided({ inputs: { x }, attrs: { outShape, strides, offset } }: Args<'strided', Arr>): Arr {
    const out = x instanceof Int32Array ? new Int32Array(sizeOf(outShape)) : this.alloc(sizeOf(outShape));
    if (out.length === 0) return out;
    if (outShape.length <= 4) {
      // Up to 4-D (every permute in a transformer): plain nested loops, no odometer callbacks.
      const [n0, n1, n2, n3] = pad4(outShape, 1);
      const [s0, s1, s2, s3] = pad4(strides, 0);
      if (!(x instanceof Int32Array) && !isHalf(x)) {
        runRows('strided', 'stridedRows', [x, out as FArr], [n1, n2, n3, s0, s1, s2, s3, offset], n0 * n1 * n2, out.length);
        return out;
      }
      let o = 0;
      for (let a = 0; a < n0; a++) {
        for (let b = 0; b < n1; b++) {
          for (let c = 0; c < n2; c++) {
            const base = offset + a * s0 + b * s1 + c * s2;
            if (s3 === 1) for (let d = 0; d < n3; d++) out[o++] = x[base + d];
            else for (let d = 0; d < n3; d++) out[o++] = x[base + d * s3];
          }
        }
      }
      return out;
    }
    const cols = outShape[outShape.length - 1] ?? 1;
    const cs = strides[strides.length - 1] ?? 0;
    forEachRow(outShape, [strides], (row, [xo]) => {
      const o = row * cols;
      const base = offset + xo;
      if (cs === 1) for (let c = 0; c < cols; c++) out[o + c] = x[base + c];
      else for (let c = 0; c < cols; c++) out[o + c] = x[base + c * cs];
    });
    return out;
  }

  stridedAdd({ inputs: { dy }, attrs: { dyShape, strides, offset, outSize } }: Args<'stridedAdd'>): FArr {
    const out = this.alloc(outSize);
    if (sizeOf(dyShape) === 0) return out;
    const cols = dyShape[dyShape.length - 1] ?? 1;
    const cs = strides[strides.length - 1] ?? 0;
    forEachRow(dyShape, [strides], (row, [xo]) => {
      const o = row * cols;
      const base = offset + xo;
      for (let c = 0; c < cols; c++) out[base + c * cs] += dy[o + c];
    });
    return out;
  }

  concat({ inputs: { xs }, attrs: { shapes, axis, outShape } }: Args<'concat', Arr>): Arr {
    const total = sizeOf(outShape);
    const out = xs[0] instanceof Int32Array ? new Int32Array(total) : this.alloc(total);
    const outer = sizeOf(outShape.slice(0, axis));
    const outRow = sizeOf(outShape.slice(axis));
    let colOffset = 0;
    xs.forEach((x, i) => {
      const row = sizeOf(shapes[i].slice(axis));
      for (let o = 0; o < outer; o++) out.set(x.subarray(o * row, (o + 1) * row), o * outRow + colOffset);
      colOffset += row;
    });
    return out;
  }

  gather({ inputs: { x, index }, attrs: { xShape, indexShape, axis } }: { inputs: { x: FArr; index: Int32Array }; attrs: KernelAttrs<'gather'> }): FArr {
    const n = sizeOf(indexShape);
    checkIndices('gather', index, n, xShape[axis]);
    const out = this.alloc(n);
    const xs = stridesOf(xShape);
    const is = stridesOf(indexShape);
    for (let i = 0; i < n; i++) out[i] = x[alongAxisOffset(i, index[i], is, xs, axis)];
    return out;
  }

  scatterAdd({ inputs: { dy, index }, attrs: { indexShape, axis, outShape } }: { inputs: { dy: FArr; index: Int32Array }; attrs: KernelAttrs<'scatterAdd'> }): FArr {
    const out = this.alloc(sizeOf(outShape));
    const xs = stridesOf(outShape);
    const is = stridesOf(indexShape);
    const n = sizeOf(indexShape);
    for (let i = 0; i < n; i++) out[alongAxisOffset(i, index[i], is, xs, axis)] += dy[i];
    return out;
  }

  /** A 16-bit table's rows are widened as they are copied out (an embedding lookup on a bf16 base). */
  indexSelect({ inputs: { x, index }, attrs: { xShape, count, axis } }: { inputs: { x: FArr | HalfArr; index: Int32Array }; attrs: KernelAttrs<'indexSelect'> }): FArr {
    const outer = sizeOf(xShape.slice(0, axis));
    const inner = sizeOf(xShape.slice(axis + 1));
    const n = xShape[axis];
    checkIndices('indexSelect', index, count, n);
    const out = this.alloc(outer * count * inner);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < count; i++) {
        const src = (o * n + index[i]) * inner;
        if (isHalf(x)) widenInto(x, src, inner, out, (o * count + i) * inner);
        else out.set(x.subarray(src, src + inner), (o * count + i) * inner);
      }
    }
    return out;
  }

  indexAdd({ inputs: { dy, index }, attrs: { count, axis, xShape } }: { inputs: { dy: FArr; index: Int32Array }; attrs: KernelAttrs<'indexAdd'> }): FArr {
    const outer = sizeOf(xShape.slice(0, axis));
    const inner = sizeOf(xShape.slice(axis + 1));
    const n = xShape[axis];
    const out = this.alloc(sizeOf(xShape));
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < count; i++) {
        const dst = (o * n + index[i]) * inner;
        const src = (o * count + i) * inner;
        for (let c = 0; c < inner; c++) out[dst + c] += dy[src + c];
      }
    }
    return out;
  }

  softmax({ inputs: { x }, attrs: { rows, cols, log } }: Args<'softmax'>): FArr {
    return nn.softmaxRows(this.alloc, x, rows, cols, log);
  }

  softmaxGrad({ inputs: { y, dy }, attrs: { rows, cols, log } }: Args<'softmaxGrad'>): FArr {
    return nn.softmaxGradRows(this.alloc, y, dy, rows, cols, log);
  }

  crossEntropy({ inputs: { logits, targets }, attrs: { rows, cols, ignoreIndex, reduction } }: { inputs: { logits: FArr; targets: Int32Array }; attrs: KernelAttrs<'crossEntropy'> }): FArr {
    return nn.crossEntropyRows(this.alloc, logits, targets, rows, cols, ignoreIndex, reduction);
  }

  crossEntropyGrad(
    { inputs: { logits, targets, dy }, attrs: { rows, cols, ignoreIndex, reduction } }: { inputs: { logits: FArr; targets: Int32Array; dy: FArr }; attrs: KernelAttrs<'crossEntropyGrad'> },
  ): FArr {
    return nn.crossEntropyGradRows(this.alloc, logits, targets, dy, rows, cols, ignoreIndex, reduction);
  }

  layerNorm({ inputs: { x, w, b }, attrs: { rows, cols, eps } }: Args<'layerNorm'>) {
    return nn.layerNormRows(this.alloc, x, w, b, rows, cols, eps);
  }

  layerNormGrad({ inputs: { x, w, mean, rstd, dy }, attrs: { rows, cols, need } }: Args<'layerNormGrad'>) {
    return nn.layerNormGradRows(this.alloc, x, w, mean, rstd, dy, rows, cols, need);
  }

  rmsNorm({ inputs: { x, w }, attrs: { rows, cols, eps } }: Args<'rmsNorm'>) {
    return nn.rmsNormRows(this.alloc, x, w, rows, cols, eps);
  }

  rmsNormGrad({ inputs: { x, w, rstd, dy }, attrs: { rows, cols, need } }: Args<'rmsNormGrad'>) {
    return nn.rmsNormGradRows(this.alloc, x, w, rstd, dy, rows, cols, need);
  }

  attention({ inputs: { q, k, v }, attrs: { bh, tq, tk, dk, dv, scale, causal } }: Args<'attention'>) {
    return attn.attentionForward(this.alloc, this.batched, q, k, v, bh, tq, tk, dk, dv, scale, causal);
  }

  attentionGrad({ inputs: { q, k, v, out, lse, dout }, attrs: { bh, tq, tk, dk, dv, scale, causal, need } }: Args<'attentionGrad'>) {
    return attn.attentionBackward(this.alloc, this.batched, q, k, v, out, lse, dout, bh, tq, tk, dk, dv, scale, causal, need);
  }

  adamUpdate({ inputs: { p, g, m, v }, attrs: { size, hyper } }: Args<'adamUpdate'>): { p: FArr; m: FArr; v: FArr } {
    nn.adamInPlace(p, g, m, v, size, hyper);
    return { p, m, v };
  }
}
