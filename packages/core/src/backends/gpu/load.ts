import type * as GpuJsModule from 'gpu.js';
import { nodeRequire } from '../../platform.ts';

/** gpu.js's exports (GPU, Texture, ...). */
export type GpuJsExports = typeof GpuJsModule;

let loaded: GpuJsExports | null = null;

type MaybeDefault = GpuJsExports | { default: GpuJsExports };

function pick(m: MaybeDefault): GpuJsExports {
  // NOTE: gpu.js is CommonJS (UMD in browsers): its exports may sit under `default`.
  return 'GPU' in m && typeof m.GPU === 'function' ? m : (m as { default: GpuJsExports }).default;
}

/**
 * Loads gpu.js once (a dynamic import, so a bundle that never uses the gpu
 * backend never evaluates it). Browsers await this, or `initBackend('gpu')`,
 * before making a GpuBackend; Node loads it synchronously on first use.
 *
 * @example await loadGpuJs(); const gpu = new GpuBackend({ mode: 'webgl2' });
 */
export async function loadGpuJs(): Promise<GpuJsExports> {
  loaded ??= pick((await import('gpu.js')) as MaybeDefault);
  return loaded;
}

/** gpu.js, loaded: synchronously through Node's require, else what `loadGpuJs` loaded. */
export function gpuJs(): GpuJsExports {
  if (loaded) return loaded;
  const req = nodeRequire(import.meta.url);
  if (!req) {
    throw new Error("gpu backend: gpu.js is not loaded yet; in a browser `await initBackend('gpu')` (or `await loadGpuJs()`) first");
  }
  loaded = pick(req('gpu.js') as GpuJsExports);
  return loaded;
}
