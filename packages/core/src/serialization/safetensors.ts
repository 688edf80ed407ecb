import {
  assertRawTensor,
  checkedNumel,
  rawTensorBytes,
  typedFromLittleEndian,
  type RawDtype,
  type RawTensor,
} from './raw.ts';

/** Options for {@link decodeSafetensors}. */
export interface DecodeSafetensorsOptions {
  /** Largest accepted JSON header, in bytes (default 100 MB, as in the reference implementation). */
  maxHeaderBytes?: number;
  /** Most tensors one file may declare (default 100,000; a 70B-parameter model's largest shard holds under 1,000). */
  maxTensors?: number;
}

/** Deepest JSON nesting a valid header needs: {name: {shape: [..]}} is 3 levels. */
const MAX_HEADER_DEPTH = 4;

/**
 * Throws unless the JSON text nests at most `max` levels and declares at most `maxEntries`
 * tensors (commas at depth 1), scanning once before JSON.parse, which would build a 5M-deep
 * structure or 500k entries first (seconds and hundreds of MB).
 */
function checkDepth(text: string, max: number, maxEntries: number): void {
  let depth = 0;
  let entries = 1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) throw new Error(`safetensors: header JSON nests deeper than ${max} levels (a valid header needs 3)`);
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x2c && depth === 1 && ++entries > maxEntries + 1) {
      throw new Error(`safetensors: header declares more than the limit of ${maxEntries} tensors`);
    }
  }
}

/** Tensors and `__metadata__` of a decoded safetensors file. */
export interface SafetensorsContents {
  tensors: Map<string, RawTensor>;
  metadata: Record<string, string>;
}

/** Default cap on the JSON header size: the reference implementation's MAX_HEADER_SIZE. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

/** What each readable file dtype becomes in memory, and its size on disk. */
const FILE_DTYPES: Readonly<Record<string, { itemsize: number; dtype: RawDtype }>> = {
  F32: { itemsize: 4, dtype: 'float32' },
  I32: { itemsize: 4, dtype: 'int32' },
  F16: { itemsize: 2, dtype: 'float32' },
  BF16: { itemsize: 2, dtype: 'float32' },
  F64: { itemsize: 8, dtype: 'float32' },
};

const WRITE_DTYPE: Readonly<Record<RawDtype, string>> = { float32: 'F32', int32: 'I32' };

// NOTE: the reference writer sorts by descending position of the dtype in its
// `Dtype` enum (..., I32, U32, F32, F64, ...), then by name; so F32 tensors come first.
const WRITE_ORDER: Readonly<Record<RawDtype, number>> = { float32: 1, int32: 0 };

const utf8 = new TextEncoder();

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * Serializes tensors to the safetensors format, byte for byte as Hugging Face's
 * `safetensors` writes them: u64 little-endian header length, compact JSON
 * header (`__metadata__` first, metadata keys sorted) padded with spaces to a
 * multiple of 8, then the little-endian data. Tensors are laid out float32
 * before int32, each group sorted by name (UTF-8 byte order), as the reference
 * writer does; for a float32-only file that is plain sorted key order.
 *
 * @example const bytes = encodeSafetensors({ w: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } }, { format: 'pt' });
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, RawTensor>> | ReadonlyMap<string, RawTensor>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const list: [string, RawTensor][] =
    tensors instanceof Map ? [...(tensors as ReadonlyMap<string, RawTensor>)] : Object.entries(tensors as Readonly<Record<string, RawTensor>>);
  const entries = list.map(([name, t]) => {
    if (name === METADATA_KEY) throw new Error(`safetensors: '${METADATA_KEY}' is reserved and cannot name a tensor`);
    assertRawTensor(t, `safetensors tensor '${name}'`);
    return { name, key: utf8.encode(name), t, bytes: rawTensorBytes(t) };
  });
  entries.sort((a, b) => WRITE_ORDER[b.t.dtype] - WRITE_ORDER[a.t.dtype] || compareBytes(a.key, b.key));

  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).map((k) => ({ k, key: utf8.encode(k) }));
    keys.sort((a, b) => compareBytes(a.key, b.key));
    const fields = keys.map(({ k }) => {
      const v = metadata[k];
      if (typeof v !== 'string') throw new Error(`safetensors: metadata '${k}' must be a string, got ${typeof v}`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`"${METADATA_KEY}":{${fields.join(',')}}`);
  }
  let offset = 0;
  for (const e of entries) {
    const end = offset + e.bytes.byteLength;
    parts.push(
      `${JSON.stringify(e.name)}:{"dtype":"${WRITE_DTYPE[e.t.dtype]}","shape":${JSON.stringify(e.t.shape)},"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = utf8.encode(`{${parts.join(',')}}`);
  const headerLen = Math.ceil(json.length / 8) * 8;

  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let pos = 8 + headerLen;
  for (const e of entries) {
    out.set(e.bytes, pos);
    pos += e.bytes.byteLength;
  }
  return out;
}

/** One tensor's entry in a safetensors header (offsets relative to the data section). */
export interface SafetensorsEntry {
  name: string;
  fileDtype: string;
  shape: number[];
  numel: number;
  begin: number;
  end: number;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseEntry(name: string, info: unknown, dataLen: number): SafetensorsEntry {
  const what = `safetensors tensor '${name}'`;
  if (!isPlainObject(info)) throw new Error(`${what}: header entry must be an object`);
  const { dtype, shape, data_offsets: offsets } = info;
  if (typeof dtype !== 'string' || !Object.hasOwn(FILE_DTYPES, dtype)) {
    throw new Error(`${what}: unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(FILE_DTYPES).join(', ')})`);
  }
  if (!Array.isArray(shape)) throw new Error(`${what}: shape must be an array, got ${JSON.stringify(shape)}`);
  const numel = checkedNumel(shape, what);
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o): o is number => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new Error(`${what}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const nbytes = numel * FILE_DTYPES[dtype]!.itemsize;
  if (!Number.isSafeInteger(nbytes) || end - begin !== nbytes) {
    throw new Error(
      `${what}: shape ${JSON.stringify(shape)} of ${dtype} needs ${nbytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  if (end > dataLen) {
    throw new Error(`${what}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataLen} bytes)`);
  }
  return { name, fileDtype: dtype, shape: shape as number[], numel, begin, end };
}

/** The float32 bit pattern of an IEEE half (exact: every half is a float32). */
export function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // NOTE: subnormal half: renormalize so the leading 1 moves into the implicit bit.
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

function readTensor(e: SafetensorsEntry, data: Uint8Array): RawTensor {
  const { fileDtype, numel, begin } = e;
  const shape = [...e.shape];
  if (fileDtype === 'F32' || fileDtype === 'I32') {
    const dtype = FILE_DTYPES[fileDtype]!.dtype;
    return { dtype, shape, data: typedFromLittleEndian(dtype, data, begin, numel) };
  }
  const out = new Float32Array(numel);
  const view = new DataView(data.buffer, data.byteOffset + begin, e.end - begin);
  if (fileDtype === 'F64') {
    for (let i = 0; i < numel; i++) out[i] = view.getFloat64(8 * i, true);
  } else {
    const bits = new Uint32Array(out.buffer);
    if (fileDtype === 'BF16') for (let i = 0; i < numel; i++) bits[i] = view.getUint16(2 * i, true) << 16;
    else for (let i = 0; i < numel; i++) bits[i] = f16ToF32Bits(view.getUint16(2 * i, true));
  }
  return { dtype: 'float32', shape, data: out };
}

/** A validated safetensors header: its entries (in file order), metadata and where the data starts. */
export interface SafetensorsHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file (8 + header length). */
  dataStart: number;
}

/**
 * The 8-byte little-endian header length at the start of a safetensors file,
 * checked against the file size and `maxHeaderBytes` (to read a header alone:
 * the first 8 bytes, then this many).
 * @example const n = safetensorsHeaderLength(first8, fileSize);
 */
export function safetensorsHeaderLength(first8: Uint8Array, fileSize: number, opts: DecodeSafetensorsOptions = {}): number {
  const maxHeader = opts.maxHeaderBytes ?? SAFETENSORS_MAX_HEADER_BYTES;
  if (fileSize < 8 || first8.length < 8) throw new Error(`safetensors: file is ${fileSize} bytes, too small to hold the 8-byte header length`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(maxHeader)) throw new Error(`safetensors: header length ${n} exceeds the limit of ${maxHeader} bytes`);
  if (n > BigInt(fileSize - 8)) {
    throw new Error(`safetensors: header length ${n} exceeds the ${fileSize - 8} bytes that follow it (truncated file?)`);
  }
  return Number(n);
}

/**
 * Parses and validates a safetensors header without touching tensor data:
 * `head` holds at least the first 8 + header-length bytes of a file of
 * `fileSize` bytes (the whole file, or a prefix read on its own; null when the
 * size is unknown, which skips the end-of-data checks). Checks as
 * {@link decodeSafetensors} does: known dtypes, byte lengths, offsets
 * contiguous, non-overlapping and covering the data section exactly.
 * @example const { entries, dataStart } = parseSafetensorsHeader(bytes);
 */
export function parseSafetensorsHeader(head: Uint8Array, fileSize: number | null = head.length, opts: DecodeSafetensorsOptions = {}): SafetensorsHeader {
  const headerLen = safetensorsHeaderLength(head, fileSize ?? head.length, opts);
  if (head.length < 8 + headerLen) throw new Error(`safetensors: header needs ${8 + headerLen} bytes, got ${head.length}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(head.subarray(8, 8 + headerLen));
  } catch {
    throw new Error('safetensors: header is not valid UTF-8');
  }
  const maxTensors = opts.maxTensors ?? 100_000;
  checkDepth(text, MAX_HEADER_DEPTH, maxTensors);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new Error(`safetensors: header is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(header)) throw new Error('safetensors: header must be a JSON object');

  // NOTE: with an unknown file size (a header read on its own), the data section ends where the last tensor does.
  const dataLen = fileSize === null ? Number.MAX_SAFE_INTEGER : fileSize - 8 - headerLen;
  let metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(info)) throw new Error(`safetensors: '${METADATA_KEY}' must be an object of strings`);
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw new Error(`safetensors: metadata '${k}' must be a string, got ${JSON.stringify(v)}`);
      }
      metadata = Object.fromEntries(Object.entries(info as Record<string, string>));
      continue;
    }
    entries.push(parseEntry(name, info, dataLen));
  }

  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev: SafetensorsEntry | undefined;
  for (const e of entries) {
    if (e.begin < covered) {
      throw new Error(`safetensors tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev!.name}' [${prev!.begin}, ${prev!.end}]`);
    }
    if (e.begin > covered) {
      throw new Error(`safetensors tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${covered} of the data section`);
    }
    covered = e.end;
    prev = e;
  }
  if (fileSize !== null && covered !== dataLen) {
    throw new Error(`safetensors: tensors cover ${covered} bytes but the data section holds ${dataLen} (trailing or missing bytes)`);
  }
  return { entries, metadata, dataStart: 8 + headerLen };
}

/**
 * Parses a safetensors file. The header is fully validated before any tensor
 * is allocated (see {@link parseSafetensorsHeader}): header length within the
 * file and under `maxHeaderBytes`, valid UTF-8 JSON, known dtypes, byte length
 * == product(shape) * itemsize, offsets in range, contiguous and
 * non-overlapping, covering the data section exactly. F32 and I32 are read as
 * is; F16, BF16 and F64 are converted to float32. Data is copied into fresh,
 * aligned typed arrays.
 *
 * @example const { tensors, metadata } = decodeSafetensors(readFileSync('adapter_model.safetensors'));
 */
export function decodeSafetensors(bytes: Uint8Array, opts: DecodeSafetensorsOptions = {}): SafetensorsContents {
  const { entries, metadata, dataStart } = parseSafetensorsHeader(bytes, bytes.length, opts);
  const data = bytes.subarray(dataStart);
  const tensors = new Map<string, RawTensor>();
  for (const e of entries) tensors.set(e.name, readTensor(e, data));
  return { tensors, metadata };
}
