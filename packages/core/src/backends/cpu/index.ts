import { sizeOf } from '../../shape.ts';
import { isHalfDtype, type Backend, type DType, type HostArray, type KernelAttrs } from '../../backend.ts';
import { allocFor, type Args, type Arr, type CpuContext, type FArr, type FloatCtor } from './arrays.ts';
import { batchedProduct, matmul as matmulKernel } from './gemm.ts';
import { disposeThreads, getNumThreads } from './threads.ts';
import { BF16Array, F16Array, isHalf, toHalf, widen, type HalfArr } from './half.ts';
import { arenaArray, arenaFree } from './arena.ts';
import * as nn from './nn-kernels.ts';
import * as attn from './attention.ts';
import * as elementwise from './elementwise.ts';
import * as red from './reduce.ts';
import * as layout from './layout.ts';



/** Arrays below this many elements are left to the garbage collector. */
const POOL_MIN_LENGTH = 4096;
/** float32 and int32 storage from this many elements lives in the shared wasm memory (see arena.ts). */
const ARENA_MIN_LENGTH = 256;
const POOL_MAX_BYTES = 256 * 2 ** 20;

/**
 * The reference backend: pure TypeScript on typed arrays. With
 * `precision: 'float64'` it computes in doubles (used by gradcheck).
 */
export class CpuBackend implements Backend<Arr> {
  readonly hasStorage = true;
  readonly mode: string;
  private readonly F: FloatCtor;
  /** What the kernel files (elementwise.ts, reduce.ts, layout.ts) allocate with. */
  private readonly ctx: CpuContext;
  private readonly pool = new Map<number, FArr[]>();
  private pooledBytes = 0;
  /** Arrays `alloc` handed out (poolable sizes only): `free` takes back these and nothing else. */
  private readonly issued = new WeakSet<FArr>();

  constructor(readonly name = 'cpu', precision: 'float32' | 'float64' = 'float32') {
    this.F = precision === 'float64' ? Float64Array : Float32Array;
    this.mode = precision === 'float64' ? 'cpu-float64' : 'cpu';
    this.ctx = { F: this.F, alloc: this.alloc, allocDtype: this.allocDtype, allocHalf: (dtype, n) => this.allocHalf(dtype, n) };
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

  fill(a: Args<'fill'>): Arr {
    return elementwise.fill(this.ctx, a);
  }

  cast(a: Args<'cast', Arr>): Arr {
    return elementwise.cast(this.ctx, a);
  }

  unary(a: Args<'unary'>): FArr {
    return elementwise.unary(this.ctx, a);
  }

  unaryGrad(a: Args<'unaryGrad'>): FArr {
    return elementwise.unaryGrad(this.ctx, a);
  }

  affine(a: Args<'affine'>): FArr {
    return elementwise.affine(this.ctx, a);
  }

  powScalar(a: Args<'powScalar'>): FArr {
    return elementwise.powScalar(this.ctx, a);
  }

  binary(a: Args<'binary'>): FArr {
    return elementwise.binary(this.ctx, a);
  }

  where(a: Args<'where'>): FArr {
    return elementwise.where(this.ctx, a);
  }

  reduce(a: Args<'reduce'>): FArr {
    return red.reduce(this.ctx, a);
  }

  private readonly batched: attn.BatchedMatmul = (a, aShape, b, bShape, ta, tb, out) =>
    batchedProduct(this.alloc, a, aShape, b, bShape, ta, tb, out);

  /** The GELU prologue and gradient epilogue run the backend's own activation kernels (SIMD, threads) around the gemm. */
  matmul(a: Args<'matmul', FArr | HalfArr>): FArr {
    const { inputs, attrs } = a;
    const free = (t: FArr): void => this.free(t);
    if (!attrs.aAct && !attrs.gradOf) return matmulKernel(this.alloc, a, free);
    const x = attrs.aAct ? this.unary({ inputs: { x: inputs.a as FArr }, attrs: { op: attrs.aAct, size: sizeOf(attrs.aShape) } }) : inputs.a;
    const at = attrs.gradOf ? inputs.at as FArr : null;
    let out = matmulKernel(this.alloc, { inputs: { ...inputs, a: x, addend: at ? null : inputs.addend }, attrs }, free);
    if (x !== inputs.a) this.free(x as FArr);
    if (at && attrs.gradOf) {
      const dx = this.unaryGrad({ inputs: { x: at, y: null, dy: out }, attrs: { op: attrs.gradOf, size: out.length } });
      this.free(out);
      out = dx;
      const add = inputs.addend;
      if (add) for (let i = 0; i < out.length; i++) out[i] += add[i];
    }
    return out;
  }

  strided(a: Args<'strided', Arr>): Arr {
    return layout.strided(this.ctx, a);
  }

  stridedAdd(a: Args<'stridedAdd'>): FArr {
    return layout.stridedAdd(this.ctx, a);
  }

  concat(a: Args<'concat', Arr>): Arr {
    return layout.concat(this.ctx, a);
  }

  gather(a: { inputs: { x: FArr; index: Int32Array }; attrs: KernelAttrs<'gather'> }): FArr {
    return layout.gather(this.ctx, a);
  }

  scatterAdd(a: { inputs: { dy: FArr; index: Int32Array }; attrs: KernelAttrs<'scatterAdd'> }): FArr {
    return layout.scatterAdd(this.ctx, a);
  }

  indexSelect(a: { inputs: { x: FArr | HalfArr; index: Int32Array }; attrs: KernelAttrs<'indexSelect'> }): FArr {
    return layout.indexSelect(this.ctx, a);
  }

  indexAdd(a: { inputs: { dy: FArr; index: Int32Array }; attrs: KernelAttrs<'indexAdd'> }): FArr {
    return layout.indexAdd(this.ctx, a);
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

  layerNormGrad({ inputs: { x, w, mean, rstd, dy, addend }, attrs: { rows, cols, need } }: Args<'layerNormGrad'>) {
    return addInto(nn.layerNormGradRows(this.alloc, x, w, mean, rstd, dy, rows, cols, need), addend);
  }

  rmsNorm({ inputs: { x, w }, attrs: { rows, cols, eps } }: Args<'rmsNorm'>) {
    return nn.rmsNormRows(this.alloc, x, w, rows, cols, eps);
  }

  rmsNormGrad({ inputs: { x, w, rstd, dy, addend }, attrs: { rows, cols, need } }: Args<'rmsNormGrad'>) {
    return addInto(nn.rmsNormGradRows(this.alloc, x, w, rstd, dy, rows, cols, need), addend);
  }

  attention(a: Args<'attention'>) {
    return attn.attentionKernel(this.alloc, this.batched, a);
  }

  attentionGrad(a: Args<'attentionGrad'>) {
    return attn.attentionGradKernel(this.alloc, this.batched, a);
  }

  adamUpdate({ inputs: { p, g, m, v }, attrs: { size, hyper } }: Args<'adamUpdate'>): { p: FArr; m: FArr; v: FArr } {
    nn.adamInPlace(p, g, m, v, size, hyper);
    return { p, m, v };
  }
}

/** A norm backward's dx plus the gradient summed so far (added in place into the fresh dx). */
function addInto<G extends { dx: FArr | null }>(grads: G, addend: FArr | null | undefined): G {
  const dx = grads.dx;
  if (dx && addend) for (let i = 0; i < dx.length; i++) dx[i] += addend[i];
  return grads;
}
