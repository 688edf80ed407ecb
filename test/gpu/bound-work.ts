// The kernel-cache bound workload, shared by the Node test (bound.test.ts) and
// the Chromium one (test/browser/bound.browser.ts, bundled into a page): cheap
// ops over many distinct shapes, each a new size signature (a new wasm module on
// webasm), results spot-checked against plain JavaScript.
import { add, exp, matmul, memory, sum, tensor, tidy, type GpuBackend, type Tensor } from '@lowrank/core';
import { lcg } from './harness.ts';

/** `count` distinct shapes of rank 2 to 4, sides 1 to 14, in a seeded order. */
export function distinctShapes(count: number, seed: number): number[][] {
  const rnd = lcg(seed);
  const seen = new Set<string>();
  const out: number[][] = [];
  while (out.length < count) {
    const rank = 2 + Math.floor(rnd() * 3);
    const shape = Array.from({ length: rank }, () => 1 + Math.floor(rnd() * 14));
    const key = shape.join('x');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(shape);
  }
  return out;
}

/** Random values in +-[0.05, 1), never zero. */
function values(n: number, rnd: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (rnd() < 0.5 ? -1 : 1) * (0.05 + 0.95 * rnd()));
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((p, q) => p * q, 1);
}

/** sum over `axis` of a row-major array of `shape`. */
function sumRef(x: Float32Array, shape: readonly number[], axis: number): Float64Array {
  const inner = sizeOf(shape.slice(axis + 1));
  const outer = sizeOf(shape.slice(0, axis));
  const n = shape[axis];
  const y = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < n; j++) for (let i = 0; i < inner; i++) y[o * inner + i] += x[(o * n + j) * inner + i];
  }
  return y;
}

/** [m, k] @ [k, c], row-major. */
function matmulRef(a: Float32Array, b: Float32Array, m: number, k: number, c: number): Float64Array {
  const y = new Float64Array(m * c);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) for (let j = 0; j < c; j++) y[i * c + j] += a[i * k + p] * b[p * c + j];
  return y;
}

export interface BoundCounts {
  shapes: number;
  /** Most kernels the cache held after any op. */
  kernelsMax: number;
  kernelsHeld: number;
  compiles: number;
  evictions: number;
  /** Results compared with JavaScript, and the largest |gpu - js| / (1 + |js|) among them. */
  checked: number;
  worst: number;
}

/**
 * One op per shape inside tidy: exp, a broadcast add, a sum over one axis or
 * a matmul, switching every `phase` shapes (GL kernels are generic in their
 * sizes: a phase reuses a few, and the switches make a small bound evict);
 * every `checkEvery`-th result is read back and compared with JavaScript.
 * `run(from, to)` goes through shapes [from, to).
 */
export class BoundWork {
  readonly shapes: number[][];
  private readonly rnd: () => number;
  private counts: BoundCounts;

  constructor(
    readonly backend: string, private readonly gpu: GpuBackend, count: number,
    private readonly phase = 1000, seed = 1, private readonly checkEvery = 25,
  ) {
    this.shapes = distinctShapes(count, seed);
    this.rnd = lcg(seed + 1);
    this.counts = { shapes: 0, kernelsMax: 0, kernelsHeld: 0, compiles: 0, evictions: 0, checked: 0, worst: 0 };
  }

  run(from: number, to: number): BoundCounts {
    for (let i = from; i < Math.min(to, this.shapes.length); i++) {
      tidy(() => this.one(i));
      this.counts.shapes++;
      this.counts.kernelsMax = Math.max(this.counts.kernelsMax, this.gpu.compiledKernels);
    }
    this.counts.kernelsHeld = this.gpu.compiledKernels;
    this.counts.compiles = this.gpu.kernelCompiles;
    this.counts.evictions = this.gpu.kernelEvictions;
    return { ...this.counts };
  }

  private one(i: number): void {
    const shape = this.shapes[i];
    const n = sizeOf(shape);
    const last = shape[shape.length - 1];
    const xs = values(n, this.rnd);
    const x = tensor(xs, { shape, backend: this.backend });
    let y: Tensor;
    let ref: () => ArrayLike<number>;
    const op = Math.floor(i / this.phase) % 4;
    switch (op) {
      case 0:
        y = exp(x);
        ref = () => xs.map(Math.exp);
        break;
      case 1: {
        const bs = values(last, this.rnd);
        y = add(x, tensor(bs, { shape: [last], backend: this.backend }));
        ref = () => xs.map((v, j) => v + bs[j % last]);
        break;
      }
      case 2: {
        const axis = i % shape.length;
        y = sum(x, axis);
        ref = () => sumRef(xs, shape, axis);
        break;
      }
      default: {
        const c = 1 + (i % 8);
        const ws = values(last * c, this.rnd);
        y = matmul(x.reshape([n / last, last]), tensor(ws, { shape: [last, c], backend: this.backend }));
        ref = () => matmulRef(xs, ws, n / last, last, c);
        break;
      }
    }
    if (i % this.checkEvery !== 0) return;
    const got = y.dataSync();
    const want = ref();
    if (got.length !== want.length) throw new Error(`bound workload: shape [${shape}] op ${op}: ${got.length} values, expected ${want.length}`);
    for (let j = 0; j < got.length; j++) {
      const err = Math.abs(got[j] - want[j]) / (1 + Math.abs(want[j]));
      if (!(err <= this.counts.worst)) this.counts.worst = Number.isNaN(err) ? Infinity : err;
    }
    this.counts.checked++;
  }

  /** Live tensors, storages, bytes and device buffers on the backend. */
  live(): { tensors: number; storages: number; bytes: number; buffers: number } {
    const m = memory(this.backend);
    return { tensors: m.liveTensors, storages: m.liveStorages, bytes: m.liveBytes, buffers: this.gpu.liveBuffers };
  }
}

/** WebAssembly memories made since `trackWasmMemories`, counted until the collector finalizes them. */
export interface WasmTracker {
  /** Memories not yet finalized, and their bytes (a gc finalizes dropped ones a task or two later). */
  live(): { count: number; bytes: number };
  made(): number;
}

/**
 * Wraps the global WebAssembly.Memory constructor so every memory made after
 * this call (gpu.js's, one per webasm module) is counted until it is collected.
 * NOTE: a FinalizationRegistry, not WeakRefs: a WeakRef keeps its target alive
 * to the end of the task that made it, so a long synchronous run would hold
 * every memory it dropped (and exhaust Chromium's wasm address space).
 */
export function trackWasmMemories(): WasmTracker {
  const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => { buffer: ArrayBuffer } } }).WebAssembly;
  const original = wasm.Memory;
  let made = 0;
  const alive = { count: 0, bytes: 0 };
  const registry = new FinalizationRegistry<number>((bytes) => {
    alive.count--;
    alive.bytes -= bytes;
  });
  wasm.Memory = new Proxy(original, {
    construct(target, args, newTarget) {
      const m = Reflect.construct(target, args, newTarget) as { buffer: ArrayBuffer };
      made++;
      alive.count++;
      alive.bytes += m.buffer.byteLength;
      registry.register(m, m.buffer.byteLength);
      return m;
    },
  });
  return { made: () => made, live: () => ({ ...alive }) };
}

/** Collects garbage and waits for finalizers (they run in tasks after the gc). */
export async function collect(gc: () => void): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc();
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 10));
}
