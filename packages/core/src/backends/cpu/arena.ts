import { FIXED_BYTES, WORKSPACE_BYTES, ensureBytes, wasmRuntime, type WasmRuntime } from './wasm-module.ts';

/**
 * Tensors that live in the shared WebAssembly memory. The cpu backend takes
 * its float32 (and int32) storage from here where the memory is shared, so
 * the gemm, GELU and the row kernels read and write tensors in place on every
 * thread: no operand is copied into the memory per call. A shared memory
 * never detaches its buffer when it grows, so a view made before a grow
 * stays valid (an unshared one would not: there the arena only hands out
 * per-call scratch, whose views are made after every block is reserved).
 *
 * Blocks are 64-byte aligned, found best-fit in a free list kept sorted by
 * address and merged with their neighbours on release. A view whose tensor
 * is never disposed is released when it is garbage-collected. The memory
 * never shrinks (WebAssembly cannot), so its size is the step's peak.
 */

const ALIGN = 64;
/** The arena stops short of the 2 GiB the kernels' i32 pointers reach; past it storage is ordinary arrays. */
const LIMIT = 2 ** 31 - 2 ** 24;
/**
 * Tensors (not scratch) stop coming from the arena past this extent. An
 * undisposed view is released only after a garbage collection, and V8 does
 * not count arena bytes as memory pressure: past the cap new storage is
 * ordinary arrays, which V8 does count, so collections come and free blocks.
 */
const TENSOR_LIMIT = 2 ** 30;

interface Block { at: number; bytes: number }

let start = 0;
let top = 0;
/** Bytes at and above this offset were never handed out: still zero. */
let clean = 0;
const free: Block[] = [];
const live = new Map<number, number>();
/** Every SharedArrayBuffer object the memory has shown (one per grow): a view on any of them is in the arena. */
const buffers = new WeakSet<ArrayBufferLike>();
let rtSeen: WasmRuntime | null = null;

const registry = new FinalizationRegistry<number>((at) => release(at));

/** The runtime (null without WebAssembly SIMD), the allocator set up on first sight. */
function runtime(): WasmRuntime | null {
  const rt = wasmRuntime();
  if (rt === null) return null;
  if (rtSeen !== rt) {
    rtSeen = rt;
    start = top = Math.ceil(FIXED_BYTES / ALIGN) * ALIGN;
    clean = rt.memory.buffer.byteLength;
  }
  return rt;
}

/** The memory's current buffer, remembered as one of the arena's. */
export function arenaBuffer(rt: WasmRuntime): ArrayBufferLike {
  const b = rt.memory.buffer;
  buffers.add(b);
  return b;
}

/** Whether `x` is a view on the shared memory (then `x.byteOffset` is its address for the kernels). */
export function inArena(x: ArrayBufferView | null): boolean {
  return x !== null && buffers.has(x.buffer);
}

const workspaces: number[] = [];

/** Thread t's gemm workspace (reserved on first use, kept for the process); -1 when the memory is full. */
export function workspaceOf(t: number): number {
  if (workspaces[t] === undefined) {
    const at = reserve(WORKSPACE_BYTES, false);
    if (at < 0) return -1;
    workspaces[t] = at;
  }
  return workspaces[t];
}

/** Best fit in the free list: its index, or -1. */
function bestFit(bytes: number): number {
  let best = -1;
  for (let i = 0; i < free.length; i++) {
    const b = free[i];
    if (b.bytes >= bytes && (best < 0 || b.bytes < free[best].bytes)) {
      best = i;
      if (b.bytes === bytes) break;
    }
  }
  return best;
}

/**
 * Reserves `bytes` in the shared memory and returns the block's byte offset
 * (zeroed when `zero`), or -1 where there is no shared memory or it is full.
 */
export function reserve(bytes: number, zero = true, limit = LIMIT): number {
  const rt = runtime();
  if (rt === null) return -1;
  const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
  let at: number;
  const i = bestFit(size);
  if (i >= 0) {
    const b = free[i];
    at = b.at;
    if (b.bytes === size) free.splice(i, 1);
    else {
      b.at += size;
      b.bytes -= size;
    }
  } else {
    if (top + size > limit || !ensureBytes(rt.memory, top + size)) return -1;
    at = top;
    top += size;
  }
  // memory.fill: TypedArray fill on shared memory is ~40x slower in V8 (a relaxed word loop, not a memset).
  if (zero && at < clean) rt.act.zero(at, Math.min(size, clean - at));
  clean = Math.max(clean, at + size);
  live.set(at, size);
  return at;
}

/** Gives a block back (a no-op for an offset that is not live). */
export function release(at: number): void {
  const size = live.get(at);
  if (size === undefined) return;
  live.delete(at);
  // Insert sorted by address, merging with the neighbours; a block that ends at the top lowers it.
  let lo = 0;
  let hi = free.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (free[mid].at < at) lo = mid + 1;
    else hi = mid;
  }
  let block: Block = { at, bytes: size };
  const prev = free[lo - 1];
  if (prev && prev.at + prev.bytes === at) {
    prev.bytes += size;
    block = prev;
    lo--;
  } else {
    free.splice(lo, 0, block);
  }
  const next = free[lo + 1];
  if (next && block.at + block.bytes === next.at) {
    block.bytes += next.bytes;
    free.splice(lo + 1, 1);
  }
  if (block.at + block.bytes === top) {
    top = block.at;
    free.splice(lo, 1);
  }
}

type View = Float32Array | Int32Array | Float64Array | Uint16Array;
type ViewCtor<V extends View> = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => V;

/**
 * A zeroed view of n elements in the shared memory, released when freed or
 * garbage-collected; null where the arena is off or full.
 */
export function arenaArray<V extends View>(C: ViewCtor<V> & { BYTES_PER_ELEMENT: number }, n: number): V | null {
  if (!runtime()?.shared) return null;
  const at = reserve(n * C.BYTES_PER_ELEMENT, true, TENSOR_LIMIT);
  if (at < 0) return null;
  const view = new C(arenaBuffer(rtSeen!), at, n);
  registry.register(view, at, view);
  return view;
}

/** Releases an arena view now (the backend's free); false for a view that is not the arena's. */
export function arenaFree(x: View): boolean {
  if (!inArena(x) || !live.has(x.byteOffset)) return false;
  registry.unregister(x);
  release(x.byteOffset);
  return true;
}

/** Bytes handed out and the arena's extent (for tests and the bench). */
export function arenaStats(): { liveBytes: number; topBytes: number; freeBlocks: number } {
  let liveBytes = 0;
  for (const s of live.values()) liveBytes += s;
  return { liveBytes, topBytes: top - start, freeBlocks: free.length };
}

/**
 * Per-call room in the memory for a kernel's operands that are not in the
 * arena, and for its descriptors: `place(x)` is x's own address when x is in
 * the arena, else a fresh block (the caller copies x in); `done()` gives the
 * blocks back. `ok` is false once a block could not be had.
 */
export class Scratch {
  private readonly blocks: number[] = [];
  ok = true;

  take(bytes: number): number {
    const at = reserve(bytes, false);
    if (at < 0) this.ok = false;
    else this.blocks.push(at);
    return at;
  }

  place(x: ArrayBufferView, bytes: number): number {
    return inArena(x) ? x.byteOffset : this.take(bytes);
  }

  done(): void {
    for (const at of this.blocks) release(at);
    this.blocks.length = 0;
  }
}
