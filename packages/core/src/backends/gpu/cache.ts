import type { CompiledKernel } from './gpujs.ts';

/** One cached kernel, how many of its outputs are alive (an evicted kernel must have none), and where it is filed. */
interface Entry {
  kernel: CompiledKernel;
  live: number;
  src: string;
  helpers: string;
  key: string;
}

/** A loop reuses a kernel compiled for a loop up to this many times longer (its iterations past the bound only test and break). */
const MAX_LOOP_REUSE = 64;

/** Loop bounds compile into GL shaders; rounding them up lets one kernel serve many sizes. */
export function loopBucket(n: number): number {
  let b = 256;
  while (b < n) b *= 2;
  return b;
}

/** What names a kernel besides its source: GLSL helpers ('' for none), then a short key of sizes and argument types. */
export interface KernelKey {
  src: string;
  helpers: string;
  /** Sizes baked into the kernel ('' where they are uniforms), argument types, raw result and sub-kernel names. */
  shape: string;
  loop: number;
}

/**
 * Compiled kernels keyed by (source, GLSL helpers, loop bucket and a short
 * key of sizes and argument types), in least-recently-used order. Sources
 * are generic in their sizes, so a new shape reuses its kernel. Past `limit`
 * entries the least recently used kernel with no live output is destroyed
 * (its program, textures, or its WebAssembly memory); a kernel whose output
 * is still alive is kept, since gpu.js reads a texture back through the
 * kernel that made it.
 */
export class KernelCache {
  // NOTE: two levels of maps so that a dispatch hashes its multi-KB source
  // (and GLSL helpers) once, then only short keys per loop bucket it tries.
  private readonly bySource = new Map<string, Map<string, Map<string, Entry>>>();
  /** Every entry, least recently used first. */
  private readonly lru = new Set<Entry>();
  /** Kernels compiled so far (a cache miss each). */
  compiles = 0;
  /** Kernels destroyed by eviction. */
  evictions = 0;

  constructor(readonly limit: number) {}

  get size(): number {
    return this.lru.size;
  }

  /** Distinct sources held (evicting a source's last kernel forgets the source). */
  get sources(): number {
    return this.bySource.size;
  }

  /**
   * The entry for a kernel: one compiled for the same or a longer loop bucket
   * (a shorter loop stops at its uniform bound), else `make(bucket)` compiles
   * one, evicting past the limit.
   */
  get(k: KernelKey, make: (bucket: number) => CompiledKernel): Entry {
    const group = this.bySource.get(k.src)?.get(k.helpers);
    const bucket = loopBucket(k.loop);
    if (group) {
      for (let b = bucket; b <= MAX_LOOP_REUSE * bucket; b *= 2) {
        const e = group.get(`${b}|${k.shape}`);
        if (!e) continue;
        this.lru.delete(e);
        this.lru.add(e);
        return e;
      }
    }
    const e: Entry = { kernel: make(bucket), live: 0, src: k.src, helpers: k.helpers, key: `${bucket}|${k.shape}` };
    this.compiles++;
    this.file(e);
    this.evict();
    return e;
  }

  private file(e: Entry): void {
    let helpers = this.bySource.get(e.src);
    if (!helpers) this.bySource.set(e.src, (helpers = new Map()));
    let group = helpers.get(e.helpers);
    if (!group) helpers.set(e.helpers, (group = new Map()));
    group.set(e.key, e);
    this.lru.add(e);
  }

  /** Removes an entry, and the maps it leaves empty (so evicted sources are not kept). */
  private unfile(e: Entry): void {
    this.lru.delete(e);
    const helpers = this.bySource.get(e.src);
    const group = helpers?.get(e.helpers);
    if (!helpers || !group) return;
    group.delete(e.key);
    if (group.size > 0) return;
    helpers.delete(e.helpers);
    if (helpers.size === 0) this.bySource.delete(e.src);
  }

  private evict(): void {
    for (const e of this.lru) {
      if (this.lru.size <= this.limit) return;
      if (e.live > 0) continue;
      this.unfile(e);
      e.kernel.destroy();
      this.evictions++;
    }
  }
}
