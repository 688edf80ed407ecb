import type { GPU } from 'gpu.js';
import { loadGpuJs } from './load.ts';

/**
 * gpu.js's `webgpu` mode under the synchronous kernel contract. A kernel
 * call there returns a Promise of a GPU-resident buffer handle, so a storage
 * holds a WebGpuBuffer: the promise of its handle. Every dispatch, read and
 * free of a backend goes through one WebGpuQueue in issue order, so a
 * dispatch runs after the dispatches that made its inputs, and a free after
 * the dispatches that read the buffer. Nothing on the synchronous path waits:
 * the queue drains on the microtask queue, and only readbacks are awaited.
 */

/** What this file needs of gpu.js's WebGPUBufferResult and of the WebGPU device behind it. */
interface Handle {
  buffer: DeviceGpuBuffer & { _refs?: number };
  output: number[];
  componentCount: number;
  context: { device: Device; isLost: boolean };
  delete(): void;
}
interface DeviceGpuBuffer {
  readonly size: number;
  destroy(): void;
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
}
interface Device {
  createBuffer(d: { size: number; usage: number }): DeviceGpuBuffer;
  createCommandEncoder(): {
    copyBufferToBuffer(src: DeviceGpuBuffer, so: number, dst: DeviceGpuBuffer, d: number, bytes: number): void;
    finish(): unknown;
  };
  queue: { submit(b: unknown[]): void };
}
/** The adapter as far as a probe reports it. */
interface Adapter {
  features: Iterable<string>;
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
  isFallbackAdapter?: boolean;
}
interface NavigatorGpu {
  requestAdapter(): Promise<Adapter | null>;
}

const MAP_READ = 0x0001;
const COPY_DST = 0x0008;
const noop = (): void => {};

/** A webgpu storage's device buffer: the handle, once the dispatch that makes it has been submitted. */
export class WebGpuBuffer {
  constructor(readonly ready: Promise<Handle>, readonly size: number, private readonly queue: WebGpuQueue) {
    ready.catch(noop); // a failure is reported by the queue (next dispatch) and by any read of this buffer
  }

  get byteLength(): number {
    return this.size * 4;
  }

  /** Frees the device buffer once every dispatch issued before this call has been submitted. */
  release(): void {
    void this.queue.after(async () => {
      const h = await this.ready.catch(() => null);
      if (!h) return;
      h.delete();
      if (!h.buffer._refs) this.queue.liveDeviceBuffers--;
    });
  }

  /** The first `count` values, read after every dispatch issued before this call. */
  read(count: number): Promise<Float32Array> {
    let out: Promise<Float32Array> = Promise.resolve(new Float32Array(0));
    // The copy is submitted in queue order (a later free cannot overtake it); only the map is awaited.
    const issued = this.queue.after(async () => {
      out = readHandle(await this.ready, count);
    });
    return issued.then(() => out);
  }
}

/** Copies a handle's first `count` floats into a staging buffer of its own and maps it. */
async function readHandle(h: Handle, count: number): Promise<Float32Array> {
  if (h.context.isLost) throw new Error('gpu backend (webgpu): the device was lost; its buffers hold no values');
  if (count === 0) return new Float32Array(0);
  const device = h.context.device;
  const bytes = count * 4;
  const staging = device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(h.buffer, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  try {
    await staging.mapAsync(MAP_READ);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    staging.destroy();
  }
}

/** One backend's webgpu calls, in issue order. */
export class WebGpuQueue {
  private tail: Promise<unknown> = Promise.resolve();
  /** The first dispatch that failed (a WGSL compile error, a lost device): later dispatches throw it. */
  failure: Error | null = null;
  /** GPU buffers made by dispatches and not yet destroyed. */
  liveDeviceBuffers = 0;
  /** Dispatches issued and not yet submitted. */
  pending = 0;
  /** The kernel family of the next dispatch, for error messages (set by the backend before each run). */
  label = 'kernel';

  /** Runs `fn` after everything issued before. */
  after<T>(fn: () => T | Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.then(noop, noop);
    return p;
  }

  /** Issues a kernel run; the promise settles once it is submitted. */
  dispatch(run: () => Promise<Handle>): Promise<Handle> {
    if (this.failure) throw this.failure;
    const name = this.label;
    this.pending++;
    return this.after(async () => {
      try {
        const h = await run();
        this.liveDeviceBuffers++;
        return h;
      } catch (e) {
        this.failure ??= new Error(`gpu backend (webgpu): kernel '${name}' failed: ${(e as Error).message}`);
        throw this.failure;
      } finally {
        this.pending--;
      }
    });
  }

  /** Resolves once everything issued so far has been submitted (or failed). */
  flush(): Promise<void> {
    return this.after(noop);
  }
}

interface WebGpuKernel {
  (...args: unknown[]): Promise<Handle>;
  setOutput(o: number[]): void;
  destroy(): void;
  kernel?: { outputBuffer: (DeviceGpuBuffer & { _refs?: number }) | null; bindGroupDirty: boolean };
}

/**
 * A gpu.js webgpu kernel behind the synchronous CompiledKernel contract:
 * `run` returns at once with a buffer whose handle the queue fills in.
 */
export function compileWebGpu(
  gpu: GPU, source: string, settings: object, queue: WebGpuQueue,
): { run(size: number, args: readonly unknown[]): WebGpuBuffer[]; destroy(): void } {
  const k = gpu.createKernel(source, settings as never) as unknown as WebGpuKernel;
  // A kernel returning `[...]` (matmul-webgpu.ts) computes 4 adjacent values per invocation.
  const per = /\breturn \[/.test(source) ? 4 : 1;
  const run = (n: number, args: readonly unknown[]): WebGpuBuffer[] => {
    const ready = queue.dispatch(async () => {
      const values = await Promise.all(args.map((a) => (a instanceof WebGpuBuffer ? a.ready : a)));
      k.setOutput([n / per]);
      const h = await k(...values);
      dropKernelRef(k);
      // NOTE: gpu.js's Array(4) results are 4 floats per cell, in order: to later kernels, a plain buffer of n.
      h.componentCount = 1;
      h.output = [n];
      return h;
    });
    return [new WebGpuBuffer(ready, n, queue)];
  };
  // Destroyed in queue order: runs issued before the eviction still find their kernel.
  return { run, destroy: () => void queue.after(() => k.destroy()) };
}

/**
 * gpu.js keeps a reference to its last output buffer in the kernel (until the
 * next run); dropping it leaves the handle the only owner, so freeing the
 * storage destroys the GPU buffer at once.
 */
function dropKernelRef(k: WebGpuKernel): void {
  const inner = k.kernel;
  const b = inner?.outputBuffer;
  if (!inner || !b) return;
  if (b._refs !== undefined && --b._refs === 0) b.destroy();
  inner.outputBuffer = null;
  inner.bindGroupDirty = true;
}

/** What answered (or did not) when the page asked for a WebGPU adapter. */
export interface WebGpuProbe {
  available: boolean;
  /** Why not, when not available. */
  reason?: string;
  adapter?: string;
  features?: string[];
}

let probed: WebGpuProbe | null = null;

function navigatorGpu(): NavigatorGpu | undefined {
  return (globalThis as { navigator?: { gpu?: NavigatorGpu } }).navigator?.gpu;
}

/**
 * Asks for a WebGPU adapter once (`navigator.gpu.requestAdapter()`), for
 * `new GpuBackend({ mode: 'webgpu' })`, whose constructor cannot wait.
 * Loads gpu.js too.
 * @example if ((await probeWebGpu()).available) registerBackend('webgpu', new GpuBackend({ mode: 'webgpu', name: 'webgpu' }));
 */
export async function probeWebGpu(): Promise<WebGpuProbe> {
  await loadGpuJs();
  if (probed) return probed;
  const gpu = navigatorGpu();
  if (!gpu) {
    probed = { available: false, reason: 'navigator.gpu is missing (Node, a browser without WebGPU, or a page that is not a secure context)' };
    return probed;
  }
  try {
    const a = await gpu.requestAdapter();
    if (!a) {
      probed = { available: false, reason: 'navigator.gpu.requestAdapter() returned null (no WebGPU adapter; headless Chromium needs --enable-unsafe-webgpu)' };
    } else {
      const i = a.info ?? {};
      const adapter = [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' ') || 'unnamed adapter';
      probed = { available: true, adapter: a.isFallbackAdapter ? `${adapter} (fallback adapter)` : adapter, features: [...a.features].sort() };
    }
  } catch (e) {
    probed = { available: false, reason: `navigator.gpu.requestAdapter() threw: ${(e as Error).message}` };
  }
  return probed;
}

/** Why webgpu cannot start now (null when it can): navigator.gpu missing, no adapter, or no probe yet. */
export function webGpuBlocker(): string | null {
  if (!navigatorGpu()) return 'navigator.gpu is missing (Node, a browser without WebGPU, or a page that is not a secure context)';
  if (!probed) return "the adapter has not been asked for yet: `await probeWebGpu()` (or `await initBackend('gpu')` with mode webgpu) first";
  return probed.available ? null : (probed.reason ?? 'no adapter');
}
