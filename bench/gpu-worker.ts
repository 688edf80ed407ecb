// Worker script of `npm run bench -- gpu --browser` (bundled by examples/web/bundle-page.ts):
// the Node gpu suite's measurement, on backends made in this Worker.
import { getNumThreads, loadGpuJs, matmul, probeWebGpu, randn, threadsNote, tidy } from '@lowrank/core';
import { expandGpuBackends } from './gpu-modes.ts';
import { measure, type Row, type TokenIds } from './gpu-step.ts';

export interface GpuBenchWorker {
  /** Loads gpu.js, registers the backends and boots the cpu thread pool; returns their names and the thread count. */
  prepare(backends: readonly string[], ids: readonly number[], vocabSize: number): Promise<{ names: string[]; threads: number; threadsNote: string | null; skipped: string[] }>;
  measure(name: string, args: readonly string[]): Promise<Row>;
}

let tokens: TokenIds | null = null;
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const api: GpuBenchWorker = {
  async prepare(backends, ids, vocabSize) {
    await loadGpuJs();
    tokens = { ids: Int32Array.from(ids), vocabSize };
    // webgpu answers only asynchronously: a row for it where an adapter answers, a line saying why not elsewhere.
    const webgpu = await probeWebGpu();
    const skipped = webgpu.available ? [] : backends.filter((b) => b === 'gpu:webgpu').map((b) => `${b}: ${webgpu.reason}`);
    const names = expandGpuBackends(backends.filter((b) => webgpu.available || b !== 'gpu:webgpu'));
    // NOTE: nested Workers start only while this Worker's event loop turns; a synchronous
    // measure would otherwise run the cpu backend on this thread alone.
    for (let i = 0; i < 4; i++) {
      tidy(() => matmul(randn([256, 256], { backend: 'cpu' }), randn([256, 256], { backend: 'cpu' })).dataSync());
      await pause(100);
    }
    return { names, threads: getNumThreads(), threadsNote: threadsNote(), skipped };
  },
  async measure(name, args) {
    if (!tokens) throw new Error('gpu bench worker: prepare() first');
    return measure(name, args, tokens, (m) => console.log(`[gpu bench ${name}] ${m}`));
  },
};

(globalThis as unknown as { gpuBench: GpuBenchWorker }).gpuBench = api;
