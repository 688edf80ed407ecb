import { Worker } from 'node:worker_threads';
import { setWorkerFactory } from '../backends/cpu/threads.ts';

/**
 * Starts the cpu backend's workers with node:worker_threads imported
 * statically. The main entry finds worker_threads by itself through
 * `process.getBuiltinModule` (Node >= 20.16); on an older Node call this
 * once, before the first kernel.
 * @example useNodeThreads(); setNumThreads(4)
 */
export function useNodeThreads(): void {
  setWorkerFactory((source, init) => {
    // execArgv: [] keeps loaders such as tsx out of the worker: its source is plain JavaScript.
    const w = new Worker(source, { eval: true, workerData: init, execArgv: [] });
    w.unref();
    return w;
  });
}
