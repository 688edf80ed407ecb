import { Packr, Unpackr } from 'msgpackr';
import { RAW_ITEMSIZE, assertRawTensor, checkedNumel, rawTensorBytes, typedFromLittleEndian, type RawTensor } from './raw.ts';

/**
 * What a checkpoint holds: a JSON-like tree (numbers, strings, booleans,
 * null, arrays, plain objects) whose leaves may also be {@link RawTensor}s.
 */
export type CheckpointValue = null | boolean | number | string | RawTensor | CheckpointValue[] | { [key: string]: CheckpointValue };

/** Value of the `format` field that opens every checkpoint. */
export const CHECKPOINT_FORMAT = 'lowrank-checkpoint';
/** Checkpoint layout version written by {@link encodeCheckpoint}. */
export const CHECKPOINT_VERSION = 1;

/** Key that marks a msgpack map as a tensor; reserved in user objects. */
const TENSOR_KEY = '__tensor__';

type Packed = null | boolean | number | string | Uint8Array | Packed[] | { [key: string]: Packed };

// Plain msgpack (no records/structures, smallest map headers), so any msgpack library can read the file.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return Object.prototype.toString.call(v).slice(8, -1);
}

function toPacked(v: CheckpointValue, path: string, ancestors: Set<object>): Packed {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v !== 'object') throw new Error(`checkpoint: cannot store ${describe(v)} at ${path}`);
  if (ancestors.has(v)) throw new Error(`checkpoint: circular reference at ${path}`);
  if ('data' in v && ArrayBuffer.isView(v.data)) {
    const t = v as RawTensor;
    assertRawTensor(t, `checkpoint tensor at ${path}`);
    return { [TENSOR_KEY]: 1, dtype: t.dtype, shape: [...t.shape], bytes: rawTensorBytes(t) };
  }
  ancestors.add(v);
  try {
    if (Array.isArray(v)) return v.map((x, i) => toPacked(x, `${path}[${i}]`, ancestors));
    if (!isPlainObject(v)) throw new Error(`checkpoint: cannot store ${describe(v)} at ${path} (only plain objects, arrays, primitives and RawTensors)`);
    const out: { [key: string]: Packed } = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === TENSOR_KEY) throw new Error(`checkpoint: key '${TENSOR_KEY}' at ${path} is reserved for tensors`);
      if (k === '__proto__') throw new Error(`checkpoint: key '__proto__' at ${path} cannot be stored (msgpack readers rename or drop it)`);
      Object.defineProperty(out, k, { value: toPacked(x, `${path}.${k}`, ancestors), enumerable: true, writable: true, configurable: true });
    }
    return out;
  } finally {
    ancestors.delete(v);
  }
}

function fromTensor(m: Record<string, unknown>, path: string): RawTensor {
  const what = `checkpoint tensor at ${path}`;
  const { dtype, shape, bytes } = m;
  if (m[TENSOR_KEY] !== 1) throw new Error(`${what}: unknown tensor encoding ${JSON.stringify(m[TENSOR_KEY])}`);
  if (dtype !== 'float32' && dtype !== 'int32') throw new Error(`${what}: unsupported dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape)) throw new Error(`${what}: shape must be an array`);
  if (!(bytes instanceof Uint8Array)) throw new Error(`${what}: bytes must be msgpack binary, got ${describe(bytes)}`);
  const n = checkedNumel(shape, what);
  const expected = n * RAW_ITEMSIZE[dtype];
  if (bytes.length !== expected) {
    throw new Error(`${what}: shape ${JSON.stringify(shape)} of ${dtype} needs ${expected} bytes but ${bytes.length} are stored`);
  }
  return { dtype, shape: [...(shape as number[])], data: typedFromLittleEndian(dtype, bytes, 0, n) };
}

function fromPacked(v: unknown, path: string): CheckpointValue {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (typeof v === 'object') {
    if (Array.isArray(v)) return v.map((x, i) => fromPacked(x, `${path}[${i}]`));
    if (isPlainObject(v)) {
      const m = v as Record<string, unknown>;
      if (Object.hasOwn(m, TENSOR_KEY)) return fromTensor(m, path);
      const out: { [key: string]: CheckpointValue } = {};
      for (const [k, x] of Object.entries(m)) {
        Object.defineProperty(out, k, { value: fromPacked(x, `${path}.${k}`), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
  }
  throw new Error(`checkpoint: unexpected ${describe(v)} at ${path} (not a checkpoint value)`);
}

/**
 * Serializes a checkpoint tree to plain msgpack (readable by any msgpack
 * library). The file is the map `{format: 'lowrank-checkpoint', version: 1,
 * data}`; each tensor becomes the map `{__tensor__: 1, dtype, shape, bytes}`
 * with `bytes` a msgpack bin of the raw little-endian elements, so tensors
 * round-trip bit-exactly (NaN payloads included). Numbers outside tensors are
 * stored as msgpack ints or float64 (msgpackr writes `-0` there as `0`).
 *
 * @example const bytes = encodeCheckpoint({ step: 3, w: { dtype: 'float32', shape: [1], data: new Float32Array([0.5]) } });
 */
export function encodeCheckpoint(obj: CheckpointValue): Uint8Array {
  const data = toPacked(obj, 'data', new Set());
  return packr.pack({ format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, data });
}

/**
 * Parses a file written by {@link encodeCheckpoint}. Throws a clear Error for
 * corrupt or truncated msgpack, a wrong `format`/`version`, values that are
 * not checkpoint values, or tensors whose byte length does not match their shape.
 *
 * @example const { step } = decodeCheckpoint(readFileSync('ckpt.msgpack')) as { step: number };
 */
export function decodeCheckpoint(bytes: Uint8Array): CheckpointValue {
  let top: unknown;
  try {
    top = unpackr.unpack(bytes);
  } catch (err) {
    throw new Error(`checkpoint: corrupt or truncated msgpack data (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof top !== 'object' || top === null || Array.isArray(top) || !isPlainObject(top)) {
    throw new Error(`checkpoint: not a lowrank checkpoint (expected a map with format '${CHECKPOINT_FORMAT}', got ${describe(top)})`);
  }
  const head = top as Record<string, unknown>;
  if (head.format !== CHECKPOINT_FORMAT) {
    throw new Error(`checkpoint: not a lowrank checkpoint (format is ${JSON.stringify(head.format)}, expected '${CHECKPOINT_FORMAT}')`);
  }
  if (head.version !== CHECKPOINT_VERSION) {
    throw new Error(`checkpoint: unsupported version ${JSON.stringify(head.version)} (this reader handles version ${CHECKPOINT_VERSION})`);
  }
  if (!Object.hasOwn(head, 'data')) throw new Error('checkpoint: missing the data field');
  return fromPacked(head.data, 'data');
}
