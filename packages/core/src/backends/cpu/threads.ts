import { wasmRuntime, type WasmRuntime } from './wasm-module.ts';
import { ERROR_BASE, ERROR_BYTES, JOB_FAIL, MAX_WORKERS, SLOT_WORDS, WORKER_SOURCE } from './worker-source.ts';

/**
 * The cpu backend's worker pool. Ops are synchronous, so the calling thread
 * posts each worker its share of a kernel in the shared memory's control
 * block, runs share 0 itself, then blocks in `Atomics.wait` until every
 * worker is done. Workers are started on the first parallel kernel, unref'd
 * (an idle pool never keeps a process alive) and ended by `disposeThreads()`.
 *
 * Where: Node (worker_threads, found through `process.getBuiltinModule`, so
 * this file imports nothing from node:*), and a Web Worker in a
 * cross-origin-isolated page. A page's main thread may not `Atomics.wait`,
 * so there the backend runs on one thread: run the engine in a Worker to use
 * several.
 */

/** What the pool needs of a started worker. */
export interface WorkerHandle {
  terminate(): unknown;
}

/** What a worker is started with (posted as workerData in Node, as the first message in a browser). */
export interface WorkerInit {
  memory: WebAssembly.Memory;
  gemmModule: WebAssembly.Module;
  actModule: WebAssembly.Module;
  index: number;
}

/** Starts a worker running `source` (plain JavaScript) with `init`. */
export type WorkerFactory = (source: string, init: WorkerInit) => WorkerHandle;

interface NodeWorker extends WorkerHandle {
  unref(): void;
}
interface NodeProcess {
  getBuiltinModule?: (id: string) => unknown;
  env?: Record<string, string | undefined>;
}
interface NodeWorkerThreads {
  Worker: new (src: string, opts: { eval: boolean; workerData: unknown; execArgv: string[] }) => NodeWorker;
  isMainThread: boolean;
}
interface WebWorker extends WorkerHandle {
  postMessage(message: unknown): void;
}
type WebWorkerCtor = new (url: string) => WebWorker;

/** How long the first kernel waits for a new worker to boot before giving up on the pool. */
const BOOT_TIMEOUT_MS = 20_000;

function nodeProcess(): NodeProcess | undefined {
  const p = (globalThis as { process?: NodeProcess }).process;
  return p && typeof p === 'object' ? p : undefined;
}

function nodeFactory(wt: NodeWorkerThreads): WorkerFactory {
  return (source, init) => {
    // execArgv: [] keeps loaders such as tsx out of the worker: its source is plain JavaScript.
    const w = new wt.Worker(source, { eval: true, workerData: init, execArgv: [] });
    w.unref();
    return w;
  };
}

function webFactory(W: WebWorkerCtor): WorkerFactory {
  let url: string | null = null;
  return (source, init) => {
    url ??= URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    const w = new W(url);
    w.postMessage(init);
    return w;
  };
}

/** Why this platform runs on one thread, or null when it can run a pool. */
let platformNote: string | null = null;
let warned = false;

/** The platform's factory, or null (with platformNote saying why) where threads cannot be used. */
function detectFactory(): WorkerFactory | null {
  const g = globalThis as {
    Worker?: WebWorkerCtor; crossOriginIsolated?: boolean; document?: unknown; navigator?: { hardwareConcurrency?: number };
  };
  const proc = nodeProcess();
  if (proc?.getBuiltinModule) {
    const wt = proc.getBuiltinModule('node:worker_threads') as NodeWorkerThreads | undefined;
    if (wt) return nodeFactory(wt);
  }
  if (proc !== undefined && g.document === undefined) {
    platformNote = 'this Node has no process.getBuiltinModule (Node < 20.16): call useNodeThreads() from @lowrank/core/node';
    return null;
  }
  if (typeof SharedArrayBuffer === 'undefined' || g.crossOriginIsolated === false) {
    platformNote = 'the page is not cross-origin isolated (no SharedArrayBuffer): serve it with COOP/COEP headers';
    return null;
  }
  if (g.document !== undefined) {
    platformNote = "a page's main thread may not Atomics.wait: run the engine in a Worker to use several threads";
    return null;
  }
  if (typeof g.Worker !== 'function') {
    platformNote = 'this worker cannot start nested Workers';
    return null;
  }
  return webFactory(g.Worker);
}

let factory: WorkerFactory | null | undefined;

function getFactory(): WorkerFactory | null {
  if (factory === undefined) factory = detectFactory();
  return factory;
}

/** Replaces how workers start (`@lowrank/core/node`'s useNodeThreads does, for Node without getBuiltinModule). */
export function setWorkerFactory(f: WorkerFactory | null): void {
  disposeThreads();
  factory = f;
  platformNote = f ? null : 'no worker factory';
  configured = null;
}

function hardwareThreads(): number {
  const proc = nodeProcess();
  const os = proc?.getBuiltinModule?.('node:os') as { availableParallelism?: () => number; cpus(): unknown[] } | undefined;
  if (os) return os.availableParallelism?.() ?? os.cpus().length;
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return nav?.hardwareConcurrency ?? 1;
}

function envThreads(): number | null {
  const raw = nodeProcess()?.env?.LOWRANK_NUM_THREADS;
  if (raw === undefined || raw === '') return null;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`LOWRANK_NUM_THREADS: expected a positive integer, got '${raw}'`);
  }
  return n;
}

/** The thread count asked for (setNumThreads, else LOWRANK_NUM_THREADS, else the hardware's); null until first asked. */
let configured: number | null = null;

/**
 * Sets how many threads the cpu backend's kernels use (the calling thread
 * included). Results are bit-identical for every count. Takes effect from the
 * next kernel; fewer threads end the surplus workers.
 * @example setNumThreads(2)
 */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS + 1) {
    throw new Error(`setNumThreads: expected an integer in [1, ${MAX_WORKERS + 1}], got ${n}`);
  }
  configured = n;
  const rt = workers.length > n - 1 ? wasmRuntime() : null;
  while (rt && workers.length > n - 1) {
    const s = workers.length * SLOT_WORDS;
    Atomics.store(control(rt), s, 4);
    Atomics.notify(control(rt), s);
    workers.pop()?.terminate();
  }
}

/** Threads the cpu backend's kernels use now: 1 where the platform cannot run workers (see threadsNote). */
export function getNumThreads(): number {
  configured ??= Math.min(envThreads() ?? hardwareThreads(), MAX_WORKERS + 1);
  if (configured === 1) return 1;
  const rt = wasmRuntime();
  if (!rt?.shared || getFactory() === null || broken) return 1;
  return configured;
}

/** Why the backend runs on one thread although more were asked for, or null. */
export function threadsNote(): string | null {
  getNumThreads();
  if (broken) return broken;
  if (wasmRuntime()?.shared === false) return 'no shared WebAssembly memory here';
  return platformNote;
}

function warnOnce(): void {
  if (warned) return;
  warned = true;
  const note = threadsNote();
  if (note) console.warn(`lowrank: the cpu backend runs on one thread: ${note}`);
}

const workers: WorkerHandle[] = [];
/** Set when a worker failed to boot: the pool is not used again in this process. */
let broken: string | null = null;

function control(rt: WasmRuntime): Int32Array {
  return new Int32Array(rt.memory.buffer, 0, SLOT_WORDS * (MAX_WORKERS + 1));
}

function readError(rt: WasmRuntime, index: number): string {
  const u16 = new Uint16Array(rt.memory.buffer, ERROR_BASE + index * ERROR_BYTES, ERROR_BYTES / 2);
  return String.fromCharCode(...u16.subarray(1, 1 + u16[0]));
}

/** Starts workers 1..n-1 that are not running yet and waits until they are ready; false if one fails to. */
function ensureWorkers(rt: WasmRuntime, n: number): boolean {
  const f = getFactory();
  if (f === null) return false;
  const ctl = control(rt);
  while (workers.length < n - 1) {
    const index = workers.length + 1;
    const s = index * SLOT_WORDS;
    Atomics.store(ctl, s, 0);
    Atomics.store(ctl, s + 1, 0);
    workers.push(f(WORKER_SOURCE, { memory: rt.memory, gemmModule: rt.gemmModule, actModule: rt.actModule, index }));
  }
  for (let i = 1; i < n; i++) {
    const s = i * SLOT_WORDS;
    if (Atomics.load(ctl, s + 1) === 0) Atomics.wait(ctl, s + 1, 0, BOOT_TIMEOUT_MS);
    const boot = Atomics.load(ctl, s + 1);
    if (boot !== 1) {
      broken = boot === 2 ? `worker ${i} failed to start: ${readError(rt, i)}` : `worker ${i} did not start within ${BOOT_TIMEOUT_MS} ms`;
      disposeThreads();
      warnOnce();
      return false;
    }
  }
  return true;
}

/**
 * How many threads a kernel of `work` units (multiply-adds, elements) should
 * use: 1 below `minWork`, where posting jobs costs more than it saves.
 */
export function threadsFor(work: number, minWork: number): number {
  if (work < minWork) return 1;
  const n = getNumThreads();
  if (n === 1 && configured !== null && configured > 1) warnOnce();
  return n;
}

/**
 * Runs one kernel on `threads` threads: post(ctl, slot, t) writes thread t's
 * job (t >= 1) into its control slot; local() runs share 0 here. Returns
 * after every worker finished; a worker's failure is thrown as an Error
 * naming the kernel, once all of them have stopped (the pool stays usable).
 * Returns false, having run nothing, when the pool cannot start.
 */
export function runParallel(
  kernel: string, threads: number,
  post: (ctl: Int32Array, slot: number, t: number) => void,
  local: () => void,
): boolean {
  const rt = wasmRuntime();
  if (rt === null || !ensureWorkers(rt, threads)) return false;
  const ctl = control(rt);
  for (let t = 1; t < threads; t++) {
    const s = t * SLOT_WORDS;
    post(ctl, s, t);
    Atomics.store(ctl, s, 1);
    Atomics.notify(ctl, s, 1);
  }
  let localError: unknown = null;
  try {
    local();
  } catch (e) {
    localError = e;
  }
  const failures: string[] = [];
  for (let t = 1; t < threads; t++) {
    const s = t * SLOT_WORDS;
    while (Atomics.load(ctl, s) === 1) Atomics.wait(ctl, s, 1);
    if (Atomics.load(ctl, s) === 3) failures.push(`worker ${t}: ${readError(rt, t)}`);
    Atomics.store(ctl, s, 0);
  }
  if (localError !== null) throw localError;
  if (failures.length > 0) throw new Error(`${kernel}: failed in the cpu thread pool (${failures.join('; ')})`);
  return true;
}

/** Test hook: a job that throws in worker 1, as a faulty kernel would. */
export function failInWorker(kernel: string): boolean {
  return runParallel(kernel, 2, (ctl, s) => {
    ctl[s + 2] = JOB_FAIL;
  }, () => {});
}

/** Ends every worker (the next parallel kernel starts them again). */
export function disposeThreads(): void {
  const rt = runtimeIfStarted();
  if (rt) {
    const ctl = control(rt);
    workers.forEach((_, i) => {
      const s = (i + 1) * SLOT_WORDS;
      Atomics.store(ctl, s, 4);
      Atomics.notify(ctl, s);
    });
  }
  while (workers.length > 0) workers.pop()?.terminate();
}

/** Live workers (for tests). */
export function workerCount(): number {
  return workers.length;
}

function runtimeIfStarted(): WasmRuntime | null {
  return workers.length > 0 ? wasmRuntime() : null;
}
