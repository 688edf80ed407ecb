import type { CompiledKernel, GpuJs } from './gpujs.ts';
import type { KernelSpec } from './sources.ts';

/**
 * Compiled kernels keyed by (source, output size, loop bound, argument
 * sizes): shapes are baked into the source, and gpu.js fixes each argument's
 * size at compile time, so one entry serves every call with those shapes.
 */
export class KernelCache {
  private readonly kernels = new Map<string, CompiledKernel>();
  /** Kernels compiled so far (a cache miss each). */
  compiles = 0;

  constructor(private readonly gj: GpuJs) {}

  get size(): number {
    return this.kernels.size;
  }

  get(spec: KernelSpec, argSizes: readonly number[] = []): CompiledKernel {
    const key = `${spec.size}|${spec.loop}|${argSizes.join(',')}|${spec.src}`;
    let k = this.kernels.get(key);
    if (!k) {
      k = this.gj.compile(spec.src, spec.size, spec.loop);
      this.kernels.set(key, k);
      this.compiles++;
    }
    return k;
  }
}
