// Page script of bound.browser.ts (bundled by examples/web/bundle-page.ts): the
// kernel-cache bound workload on a gpu backend in this page, in chunks the test
// calls one by one, and probes of what the page holds between them.
import { GpuBackend, loadGpuJs, registerBackend, type GpuMode } from '@lowrank/core';
import { BoundWork, collect, trackWasmMemories, type BoundCounts } from '../gpu/bound-work.ts';

export interface Probe {
  /** performance.memory.usedJSHeapSize after a gc. */
  heap: number;
  wasm: { count: number; bytes: number };
  /** WebGL textures and programs created and not deleted. */
  gl: { textures: number; programs: number };
  live: ReturnType<BoundWork['live']>;
}

export interface BoundPage {
  start(mode: GpuMode, count: number, maxKernels?: number): Promise<{ mode: string; bound: number }>;
  run(from: number, to: number): BoundCounts;
  probe(): Promise<Probe>;
}

type GlProto = Record<string, (...a: unknown[]) => unknown>;

/** Counts live WebGL2 textures and programs by wrapping their create/delete calls. */
function trackGl(): () => Probe['gl'] {
  const live = { textures: 0, programs: 0 };
  const ctor = (globalThis as unknown as { WebGL2RenderingContext?: { prototype: GlProto } }).WebGL2RenderingContext;
  if (!ctor) return () => ({ ...live });
  const wrap = (name: string, kind: keyof typeof live, delta: number): void => {
    const f = ctor.prototype[name];
    ctor.prototype[name] = function (this: unknown, ...a: unknown[]) {
      if (delta > 0 || a[0]) live[kind] += delta;
      return f.apply(this, a);
    };
  };
  wrap('createTexture', 'textures', 1);
  wrap('deleteTexture', 'textures', -1);
  wrap('createProgram', 'programs', 1);
  wrap('deleteProgram', 'programs', -1);
  return () => ({ ...live });
}

const wasm = trackWasmMemories();
const gl = trackGl();
let work: BoundWork | null = null;
const g = globalThis as unknown as { gc?: () => void; performance: { memory?: { usedJSHeapSize: number } }; boundPage: BoundPage };

g.boundPage = {
  async start(mode, count, maxKernels) {
    await loadGpuJs();
    const be = new GpuBackend({ mode, name: 'gpu-bound', maxKernels });
    registerBackend(be.name, be);
    work = new BoundWork(be.name, be, count);
    return { mode: be.mode, bound: be.kernelBound };
  },
  run(from, to) {
    if (!work) throw new Error('bound page: start() first');
    return work.run(from, to);
  },
  async probe() {
    if (!work || !g.gc || !g.performance.memory) throw new Error('bound page: start() first, in a Chromium with --js-flags=--expose-gc');
    await collect(g.gc);
    return { heap: g.performance.memory.usedJSHeapSize, wasm: wasm.live(), gl: gl(), live: work.live() };
  },
};
