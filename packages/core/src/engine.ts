import type { Backend, DType, KernelArgs, KernelName, KernelOut } from './backend.ts';
import type { Shape } from './shape.ts';

/** Per-backend counters, as `memory()` reports them. */
export interface MemoryInfo {
  liveBytes: number;
  peakBytes: number;
  liveTensors: number;
  /** Storages (textures on gpu) alive, shared by views. */
  liveStorages: number;
  kernelLaunches: number;
  readbacks: number;
  /** Host-to-device transfers: tensor uploads, plus host arrays a device backend passes to its kernels. */
  uploads: number;
  /** Device kernel runs (gpu.js dispatches); 0 on backends that run kernels in-process. */
  dispatches: number;
  /** Device kernels compiled (shader / wasm module builds). */
  compiles: number;
  /** Device buffer bytes allocated by dispatches and uploads (cumulative; texels as allocated). */
  textureBytes: number;
}

/** A backend allocation, shared by a tensor and its views. */
export class Storage {
  refs = 0;
  constructor(
    readonly backend: Backend,
    public data: unknown,
    readonly bytes: number,
  ) {}
}

export interface KernelRecord {
  kernel: KernelName;
  backend: string;
  /** Output shape as the op stated it (undefined for multi-output kernels). */
  outShape?: Shape;
  /** Wall time of the call, ms (synchronous backends: the kernel's own time). */
  ms?: number;
}

const stats = new Map<Backend, MemoryInfo>();
let kernelLog: KernelRecord[] | null = null;

export function statsOf(backend: Backend): MemoryInfo {
  let s = stats.get(backend);
  if (!s) {
    s = { liveBytes: 0, peakBytes: 0, liveTensors: 0, liveStorages: 0, kernelLaunches: 0, readbacks: 0, uploads: 0, dispatches: 0, compiles: 0, textureBytes: 0,
    };
    stats.set(backend, s);
  }
  return s;
}

/** Calls a backend kernel, counting the launch (and logging it inside `profileKernels`). */
export function runKernel<K extends KernelName>(
  backend: Backend,
  name: K,
  outShape: Shape | undefined,
  args: KernelArgs<unknown, K>,
): KernelOut<unknown, K> {
  statsOf(backend).kernelLaunches++;
  const fn = backend[name] as (a: KernelArgs<unknown, K>) => KernelOut<unknown, K>;
  if (!kernelLog) return fn.call(backend, args);
  const record: KernelRecord = { kernel: name, backend: backend.name, outShape: outShape && [...outShape] };
  kernelLog.push(record);
  const t0 = performance.now();
  const out = fn.call(backend, args);
  record.ms = performance.now() - t0;
  return out;
}

/** Runs fn and returns every kernel it launched, in order: `profileKernels(() => loss.backward())`. */
export function profileKernels(fn: () => void): KernelRecord[] {
  const outer = kernelLog;
  const log: KernelRecord[] = [];
  kernelLog = log;
  try {
    fn();
  } finally {
    kernelLog = outer;
    if (outer) outer.push(...log);
  }
  return log;
}

export function newStorage(backend: Backend, data: unknown, size: number, dtype: DType): Storage {
  // meta storages count the bytes they would take, so a meta forward pass sizes activations.
  const bytes = size * backend.bytesPerElement(dtype);
  const s = statsOf(backend);
  s.liveBytes += bytes;
  s.liveStorages++;
  if (s.liveBytes > s.peakBytes) s.peakBytes = s.liveBytes;
  return new Storage(backend, data, bytes);
}

export function releaseStorage(storage: Storage): void {
  storage.refs--;
  if (storage.refs > 0) return;
  const s = statsOf(storage.backend);
  s.liveBytes -= storage.bytes;
  s.liveStorages--;
  if (storage.data !== null) storage.backend.free(storage.data);
  storage.data = null;
}

export function countReadback(backend: Backend): void {
  statsOf(backend).readbacks++;
}

export function countUpload(backend: Backend): void {
  statsOf(backend).uploads++;
}
