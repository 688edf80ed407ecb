import { ACTIVATIONS_WASM_BASE64 } from './activations-wasm.ts';
import { GEMM_WASM_BASE64, GEMM_WASM_RELAXED_BASE64 } from './gemm-wasm.ts';

export interface GemmExports {
  gemm(
    m: number, n: number, k: number,
    a: number, sAm: number, sAk: number,
    b: number, sBk: number, sBn: number,
    c: number, ldc: number, ws: number, mcBlock: number, kcBlock: number, ncBlock: number, bmode: number,
  ): void;
}

export interface ActivationExports {
  gelu(x: number, out: number, n4: number): void;
  geluGrad(x: number, dy: number, out: number, n4: number): void;
  /** Zeroes n bytes at p (memory.fill). */
  zero(p: number, n: number): void;
}

/**
 * The cpu backend's WebAssembly state: one memory (shared when the platform
 * has SharedArrayBuffer, so worker threads compute in it too) and the kernel
 * modules instantiated on it. The compiled modules go to the workers.
 */
export interface WasmRuntime {
  memory: WebAssembly.Memory;
  shared: boolean;
  gemm: GemmExports;
  act: ActivationExports;
  gemmModule: WebAssembly.Module;
  actModule: WebAssembly.Module;
  /** Whether the gemm runs its relaxed-SIMD (fused multiply-add) micro-kernel. */
  relaxed: boolean;
}

const PAGE = 65536;
/** Pointers stay below 2^31, so they pass through i32 parameters unchanged. */
const MAX_BYTES = 2 ** 31;
const MAX_PAGES = MAX_BYTES / PAGE;

/**
 * The memory's fixed layout, in bytes: the thread pool's control block, then
 * the float16 -> float32 table the gemm reads 16-bit halves through
 * (gemm.wat's `offset=65536`). Everything after is the arena (arena.ts):
 * tensors, per-thread gemm workspaces, per-call scratch.
 */
export const CONTROL_BYTES = 65536;
export const F16_TABLE = 65536;
export const FIXED_BYTES = F16_TABLE + 65536 * 4;

/** Gemm cache blocking (tuned on Zen 5): an MC x KC block of A stays in L2, a KC x 8 panel of B in L1. */
export const MC = 128;
export const KC = 512;
export const NC = 1024;
/** 128 scratch bytes for the kernel's partial tiles, then the packed A and B panels. */
export const WORKSPACE_BYTES = 128 + (MC + NC) * KC * 4;


/** Decodes base64 with `atob`, which Node (>= 16) and browsers both have, unlike `Buffer`. */
function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A shared memory where SharedArrayBuffer exists (Node; a cross-origin-isolated page), else null. */
function sharedMemory(initialPages: number): WebAssembly.Memory | null {
  if (typeof SharedArrayBuffer === 'undefined') return null;
  try {
    return new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true });
  } catch {
    return null;
  }
}

function instantiate<E>(module: WebAssembly.Module, memory: WebAssembly.Memory): E {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as E;
}

let runtime: WasmRuntime | null | undefined;

/**
 * Whether to use the relaxed-SIMD gemm where the engine has it (default yes).
 * LOWRANK_RELAXED_SIMD=0 keeps the plain kernel, whose float32 results are
 * the same on every machine (a fused multiply-add rounds once, so results
 * with and without one differ in the last bits).
 */
function relaxedWanted(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.LOWRANK_RELAXED_SIMD !== '0';
}

/**
 * The runtime, created on first use; null where WebAssembly SIMD is missing.
 * NOTE: validating the real module is the SIMD feature test: without f32x4 it fails.
 */
export function wasmRuntime(): WasmRuntime | null {
  if (runtime !== undefined) return runtime;
  if (typeof WebAssembly === 'undefined') return (runtime = null);
  const initial = Math.ceil(FIXED_BYTES / PAGE);
  const shared = sharedMemory(initial);
  const memory = shared ?? new WebAssembly.Memory({ initial, maximum: MAX_PAGES });
  const bytesOf = (b64: string): Uint8Array<ArrayBuffer> => (shared ? decodeBase64(b64) : unshareMemory(decodeBase64(b64)));
  const plainBytes = bytesOf(GEMM_WASM_BASE64);
  const actBytes = bytesOf(ACTIVATIONS_WASM_BASE64);
  if (!WebAssembly.validate(plainBytes) || !WebAssembly.validate(actBytes)) return (runtime = null);
  // NOTE: validating the relaxed module is the relaxed-SIMD feature test (Node 20 needs --experimental-wasm-relaxed-simd).
  const relaxedBytes = relaxedWanted() ? bytesOf(GEMM_WASM_RELAXED_BASE64) : null;
  const relaxed = relaxedBytes !== null && WebAssembly.validate(relaxedBytes);
  const gemmBytes = relaxed ? relaxedBytes : plainBytes;
  const gemmModule = new WebAssembly.Module(gemmBytes);
  const actModule = new WebAssembly.Module(actBytes);
  runtime = {
    memory, shared: shared !== null, gemmModule, actModule, relaxed,
    gemm: instantiate<GemmExports>(gemmModule, memory),
    act: instantiate<ActivationExports>(actModule, memory),
  };
  return runtime;
}

/**
 * The module with its imported memory not shared (for a page that is not cross-origin
 * isolated): a copy with the shared bit of the memory import's limits cleared, the one
 * byte in which the two compiles differ. Our modules import only a memory.
 */
export function unshareMemory(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes);
  let at = 8; // magic and version
  const skip = (): void => {
    const n = leb(); // read before adding: `at += leb()` would add to the old `at`
    at += n;
  };
  const leb = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = out[at++];
      v |= (b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  while (at < out.length) {
    const id = out[at++];
    if (id !== 2) {
      skip();
      continue;
    }
    leb(); // section size
    for (let n = leb(); n > 0; n--) {
      skip(); // module name
      skip(); // field name
      if (out[at++] !== 2) throw new Error('unshareMemory: the module imports something other than a memory');
      const flags = out[at];
      out[at++] = flags & ~0x02; // limits flags: bit 0 'has a maximum', bit 1 'shared'
      leb(); // minimum
      if (flags & 0x01) leb(); // maximum
    }
    return out;
  }
  throw new Error('unshareMemory: the module imports no memory');
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

let f16Ready = false;

/** Fills the float16 -> float32 table once (the gemm widens float16 B through it). */
export function ensureF16Table(rt: WasmRuntime, widen: (bits: number) => number): void {
  if (f16Ready) return;
  const table = new Float32Array(rt.memory.buffer, F16_TABLE, 65536);
  for (let h = 0; h < 65536; h++) table[h] = widen(h);
  f16Ready = true;
}
