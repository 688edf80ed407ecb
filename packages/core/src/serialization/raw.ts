/** Element types a {@link RawTensor} can hold. */
export type RawDtype = 'float32' | 'int32';

/**
 * A tensor as plain data: dtype, row-major shape and a flat typed array of
 * `product(shape)` elements (one element for the 0-d shape `[]`). This is the
 * unit the serialization layer reads and writes, independent of any backend.
 *
 * @example const t: RawTensor = { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) };
 */
export interface RawTensor {
  dtype: RawDtype;
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Bytes per element of each {@link RawDtype}. */
export const RAW_ITEMSIZE: Readonly<Record<RawDtype, number>> = { float32: 4, int32: 4 };

/** True on little-endian hosts, where typed-array bytes are already the on-disk order. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Number of elements of `shape`, validating that every dimension is a
 * non-negative integer and that the product stays exactly representable.
 * `what` names the tensor in error messages.
 */
export function checkedNumel(shape: readonly unknown[], what: string): number {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new Error(`${what}: invalid dimension ${JSON.stringify(d)} in shape ${JSON.stringify(shape)} (dims must be non-negative integers)`);
    }
    n *= d;
    if (!Number.isSafeInteger(n)) {
      throw new Error(`${what}: element count of shape ${JSON.stringify(shape)} overflows`);
    }
  }
  return n;
}

/** True when `v` looks like a {@link RawTensor} (dtype, shape array, matching typed array). */
export function isRawTensor(v: unknown): v is RawTensor {
  if (typeof v !== 'object' || v === null) return false;
  const t = v as Partial<RawTensor>;
  return (
    Array.isArray(t.shape) &&
    ((t.dtype === 'float32' && t.data instanceof Float32Array) || (t.dtype === 'int32' && t.data instanceof Int32Array))
  );
}

/** Throws unless `t` is a well-formed RawTensor whose data length equals product(shape). */
export function assertRawTensor(t: RawTensor, what: string): void {
  if (t.dtype !== 'float32' && t.dtype !== 'int32') {
    throw new Error(`${what}: unsupported dtype ${JSON.stringify(t.dtype)} (expected 'float32' or 'int32')`);
  }
  const expected = t.dtype === 'float32' ? Float32Array : Int32Array;
  if (!(t.data instanceof expected)) {
    throw new Error(`${what}: dtype ${t.dtype} needs a ${expected.name}, got ${Object.prototype.toString.call(t.data)}`);
  }
  if (!Array.isArray(t.shape)) throw new Error(`${what}: shape must be an array`);
  const n = checkedNumel(t.shape, what);
  if (t.data.length !== n) {
    throw new Error(`${what}: shape ${JSON.stringify(t.shape)} needs ${n} elements but data has ${t.data.length}`);
  }
}

/** The little-endian bytes of `t.data` (a view when the host is little-endian, else a swapped copy). */
export function rawTensorBytes(t: RawTensor): Uint8Array {
  const { data } = t;
  if (HOST_LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  if (data instanceof Float32Array) for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i]!, true);
  else for (let i = 0; i < data.length; i++) view.setInt32(4 * i, data[i]!, true);
  return out;
}

/**
 * A fresh, aligned typed array holding the little-endian 4-byte elements in
 * `bytes[begin, begin + 4n)`; works for any `begin` alignment.
 */
export function typedFromLittleEndian(dtype: RawDtype, bytes: Uint8Array, begin: number, n: number): Float32Array | Int32Array {
  const out = dtype === 'float32' ? new Float32Array(n) : new Int32Array(n);
  if (HOST_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(begin, begin + 4 * n));
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset + begin, 4 * n);
    if (out instanceof Float32Array) for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
    else for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
  }
  return out;
}
