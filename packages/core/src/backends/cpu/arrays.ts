import type { DType, HalfDType, KernelArgs, KernelName } from '../../backend.ts';
import { BF16Array, F16Array, type HalfArr } from './half.ts';

/** float32 storage (Float64Array in the float64 reference backend) or int32 storage. */
export type FArr = Float32Array | Float64Array;
/** Every storage: float, 16-bit float (bits, see half.ts) or int32. */
export type Arr = FArr | HalfArr | Int32Array;
export type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;
/** Makes a zeroed float array of n elements (fresh or recycled). */
export type Alloc = (n: number) => FArr;
/** A kernel's argument over float arrays (a kernel that reads int32 or 16-bit storage names its own). */
export type Args<K extends KernelName, D = FArr> = KernelArgs<D, K>;

/** What the kernel families take from the backend: its allocators (pool and shared memory) and float type. */
export interface CpuContext {
  readonly F: FloatCtor;
  alloc: Alloc;
  allocDtype(dtype: DType, n: number): Arr;
  allocHalf(dtype: HalfDType, n: number): HalfArr;
}

export function allocFor(F: FloatCtor, dtype: DType, size: number): Arr {
  if (dtype === 'float32') return new F(size);
  if (dtype === 'bfloat16') return new BF16Array(size);
  if (dtype === 'float16') return new F16Array(size);
  return new Int32Array(size);
}

/**
 * Calls fn(outerIndex, offsets) for every position of all but the last axis of
 * `shape`, with each operand's flat offset under its own strides (odometer).
 */
export function forEachRow(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  fn: (row: number, offsets: number[]) => void,
): void {
  const rank = shape.length;
  const offsets = strides.map(() => 0);
  if (rank <= 1) {
    fn(0, offsets);
    return;
  }
  let rows = 1;
  for (let i = 0; i < rank - 1; i++) rows *= shape[i];
  if (rows === 0) return;
  const idx = new Array<number>(rank - 1).fill(0);
  for (let r = 0; r < rows; r++) {
    fn(r, offsets);
    for (let ax = rank - 2; ax >= 0; ax--) {
      idx[ax]++;
      for (let s = 0; s < strides.length; s++) offsets[s] += strides[s][ax];
      if (idx[ax] < shape[ax]) break;
      for (let s = 0; s < strides.length; s++) offsets[s] -= strides[s][ax] * shape[ax];
      idx[ax] = 0;
    }
  }
}
