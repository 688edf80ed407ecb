import type { CompiledKernel, GpuJs, RawGl } from './gpujs.ts';

/** One cached kernel and how many of its outputs are alive (an evicted kernel must have none). */
interface Entry {
  kernel: CompiledKernel;
  live: number;
}

/** Loop bounds compile into GL shaders; rounding them up lets one kernel serve many sizes. */
export function loopBucket(n: number): number {
  let b = 256;
  while (b < n) b *= 2;
  return b;
}

/**
 * Compiled kernels keyed by (source, loop bucket, argument types), in
 * least-recently-used order. Sources are generic in their sizes, so a new
 * shape reuses its kernel. Past `limit` entries the least recently used
 * kernel with no live output is destroyed (its program, textures, or its
 * WebAssembly memory); a kernel whose output is still alive is kept, since
 * gpu.js reads a texture back through the kernel that made it.
 */
export class KernelCache {
  private readonly entries = new Map<string, Entry>();
  /** Kernels compiled so far (a cache miss each). */
  compiles = 0;
  /** Kernels destroyed by eviction. */
  evictions = 0;

  constructor(private readonly gj: GpuJs, readonly limit: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** Whether a kernel is held (does not touch its recency). */
  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The entry for a kernel, compiling on a miss and evicting past the limit. */
  get(key: string, make: () => CompiledKernel): Entry {
    let e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      this.entries.set(key, e);
      return e;
    }
    e = { kernel: make(), live: 0 };
    this.compiles++;
    this.entries.set(key, e);
    this.evict();
    return e;
  }

  private evict(): void {
    if (this.entries.size <= this.limit) return;
    for (const [key, e] of this.entries) {
      if (this.entries.size <= this.limit) return;
      if (e.live > 0) continue;
      this.entries.delete(key);
      e.kernel.destroy();
      this.evictions++;
    }
  }

  /** Compiles from the GpuJs wrapper (kept here so callers need not import it). */
  compile(source: string, loopMax: number, types: Record<string, string>, raw?: RawGl, subKernels?: readonly string[]): CompiledKernel {
    return this.gj.compile(source, loopMax, types, raw, subKernels);
  }
}
