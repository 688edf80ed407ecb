import { wasmRuntime, type WasmRuntime } from './wasm-module.ts';
import { workspaceOf } from './arena.ts';
import {
  CTL_CLAIM, CTL_COUNT, CTL_DESC, CTL_DONE, CTL_FAILED, CTL_GEN, CTL_KIND, CTL_QUIT, CTL_READY, CTL_WORDS, ERROR_BASE,
  ERROR_BYTES, GEN_MASK, JOB_FAIL, MAX_TILES, MAX_WORKERS, TILE_BITS, WORKER_SOURCE,
} from './worker-source.ts';

/**
 * The cpu backend's worker pool. Ops are synchronous, so the calling thread
 * posts a kernel as a list of tiles in the shared memory's control block,
 * claims and runs tiles itself alongside the workers, then blocks in
 * `Atomics.wait` until every tile is done (see worker-source.ts). Workers are started on the first parallel kernel, unref'd
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
  /** Byte offset of this worker's gemm workspace. */
  workspace: number;
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
/** Set when a worker failed to start: the pool is not used again in this process. */
let broken: string | null = null;

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
  endWorkersFrom(n);
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
let generation = 0;
/** Jobs handed to the pool so far, by kernel name (tests check that a kernel really ran split). */
const jobCounts = new Map<string, number>();

/** How many jobs of `kernel` went to the pool in this process. */
export function parallelJobs(kernel: string): number {
  return jobCounts.get(kernel) ?? 0;
}

function control(rt: WasmRuntime): Int32Array {
  return new Int32Array(rt.memory.buffer, 0, CTL_WORDS);
}

function readError(rt: WasmRuntime, index: number): string {
  const u16 = new Uint16Array(rt.memory.buffer, ERROR_BASE + index * ERROR_BYTES, ERROR_BYTES / 2);
  return String.fromCharCode(...u16.subarray(1, 1 + u16[0]));
}

/**
 * Starts workers 1..n-1 that are not running yet. It does not wait for them
 * to boot: until one does, the others (and the caller) claim its tiles.
 */
function ensureWorkers(rt: WasmRuntime, n: number): boolean {
  const f = getFactory();
  if (f === null) return false;
  const ctl = control(rt);
  while (workers.length < n - 1) {
    const index = workers.length + 1;
    Atomics.store(ctl, CTL_READY + index, 0);
    Atomics.store(ctl, CTL_QUIT + index, 0);
    const workspace = workspaceOf(index);
    // The memory is full: this kernel runs on the calling thread.
    if (workspace < 0) return false;
    try {
      workers.push(f(WORKER_SOURCE, {
        memory: rt.memory, gemmModule: rt.gemmModule, actModule: rt.actModule, index, workspace,
      }));
    } catch (e) {
      broken = `starting worker ${index} failed: ${(e as Error).message}`;
      disposeThreads();
      warnOnce();
      return false;
    }
  }
  for (let i = 1; i < n; i++) {
    if (Atomics.load(ctl, CTL_READY + i) === 2) {
      broken = `worker ${i} failed to start: ${readError(rt, i)}`;
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

/** Claims and runs tiles of generation g until none are left; returns the first error thrown. */
function claimTiles(ctl: Int32Array, g: number, count: number, run: (i: number) => void): unknown {
  let error: unknown = null;
  for (;;) {
    const c = Atomics.load(ctl, CTL_CLAIM);
    if (c >>> TILE_BITS !== g) return error;
    const i = c & MAX_TILES;
    if (i >= count) return error;
    if (Atomics.compareExchange(ctl, CTL_CLAIM, c, c + 1) !== c) continue;
    try {
      run(i);
    } catch (e) {
      error ??= e;
    }
    Atomics.add(ctl, CTL_DONE, 1);
  }
}

/**
 * Runs `count` tiles of one kernel on up to `threads` threads: the job's
 * descriptors are at byte `desc` of the shared memory (16 words each; the
 * workers read them), `local(i)` runs tile i on this thread. Tiles go to
 * whichever thread claims them first, so a worker the OS does not schedule
 * costs nothing but its share of speed. Returns once every tile is done; a
 * worker's failure is thrown as an Error naming the kernel (the pool stays
 * usable). Returns false, having run nothing, when the pool cannot start.
 * `helpLocally: false` leaves every tile to the workers (the error test).
 */
export function runParallel(
  kernel: string, kind: number, threads: number, desc: number, count: number,
  local: (i: number) => void, helpLocally = true,
): boolean {
  if (count > MAX_TILES - 1) throw new Error(`${kernel}: ${count} tiles is more than the thread pool takes (${MAX_TILES - 1})`);
  const rt = wasmRuntime();
  if (rt === null || !ensureWorkers(rt, threads)) return false;
  const ctl = control(rt);
  jobCounts.set(kernel, parallelJobs(kernel) + 1);
  const g = (generation = (generation + 1) & GEN_MASK);
  // Close the claim word under the new generation first: a worker still on the old job stops claiming.
  Atomics.store(ctl, CTL_CLAIM, ((g << TILE_BITS) | MAX_TILES) | 0);
  ctl[CTL_KIND] = kind;
  ctl[CTL_COUNT] = count;
  ctl[CTL_DESC] = desc;
  Atomics.store(ctl, CTL_DONE, 0);
  Atomics.store(ctl, CTL_FAILED, 0);
  Atomics.store(ctl, CTL_CLAIM, (g << TILE_BITS) | 0);
  Atomics.store(ctl, CTL_GEN, g);
  Atomics.notify(ctl, CTL_GEN);
  const localError = helpLocally ? claimTiles(ctl, g, count, local) : null;
  let done: number;
  while ((done = Atomics.load(ctl, CTL_DONE)) < count) Atomics.wait(ctl, CTL_DONE, done);
  const failed = Atomics.load(ctl, CTL_FAILED);
  if (localError !== null) throw localError;
  if (failed > 0) throw new Error(`${kernel}: failed in the cpu thread pool (worker ${failed - 1}: ${readError(rt, failed - 1)})`);
  return true;
}

/** Test hook: a job whose one tile throws in a worker, as a faulty kernel would. */
export function failInWorker(kernel: string): boolean {
  return runParallel(kernel, JOB_FAIL, 2, 0, 1, () => {}, false);
}

/** Ends every worker (the next parallel kernel starts them again). */
export function disposeThreads(): void {
  endWorkersFrom(1);
}

/** Ends workers index.. (1-based: worker i has control words READY + i, QUIT + i). */
function endWorkersFrom(index: number): void {
  if (workers.length < index) return;
  const rt = wasmRuntime();
  const ctl = rt && control(rt);
  while (workers.length >= index) {
    const i = workers.length;
    if (ctl) Atomics.store(ctl, CTL_QUIT + i, 1);
    workers.pop()?.terminate();
  }
  if (ctl) Atomics.notify(ctl, CTL_GEN);
}

/** Live workers (for tests). */
export function workerCount(): number {
  return workers.length;
}

