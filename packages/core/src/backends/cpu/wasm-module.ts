/** What every hand-written kernel module exports besides its functions. */
export interface WasmExports {
  memory: WebAssembly.Memory;
}

const PAGE = 65536;
/** Pointers stay below 2^31, so they pass through i32 parameters unchanged. */
const MAX_BYTES = 2 ** 31;

/** Decodes base64 with `atob`, which Node (>= 16) and browsers both have, unlike `Buffer`. */
function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * A lazy loader for a committed module: instantiated on first use, null where
 * WebAssembly SIMD is missing. NOTE: validating the real module is the SIMD
 * feature test: without f32x4 it fails.
 */
export function simdModule<E extends WasmExports>(base64: string): () => E | null {
  let instance: E | null | undefined;
  return () => {
    if (instance !== undefined) return instance;
    const bytes = decodeBase64(base64);
    if (typeof WebAssembly === 'undefined' || !WebAssembly.validate(bytes)) return (instance = null);
    instance = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as E;
    return instance;
  };
}

/** Grows `memory` to hold `end` bytes; false past 2 GiB or when the engine refuses. */
export function ensureBytes(memory: WebAssembly.Memory, end: number): boolean {
  if (end > MAX_BYTES) return false;
  const have = memory.buffer.byteLength;
  if (end <= have) return true;
  try {
    memory.grow(Math.ceil((end - have) / PAGE));
    return true;
  } catch {
    return false;
  }
}
