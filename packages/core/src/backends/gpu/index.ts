import { isFloatDtype, isHalfDtype, type Backend, type DType, type HostArray } from '../../backend.ts';
import { toHalf, widen } from '../cpu/half.ts';
import { countReadback, statsOf } from '../../engine.ts';
import { CpuBackend } from '../cpu/index.ts';
import { KernelCache, type KernelKey } from './cache.ts';
import { CodeGen } from './codegen.ts';
import {
  GPU_MODES, GpuJs, argumentType, bufferBytes, deleteBuffer, isDeviceMode, isGlMode, modeSupported, readBuffer,
  type DeviceBuffer, type GpuMode, type KernelArg,
} from './gpujs.ts';
import { gpuJs } from './load.ts';
import * as src from './sources.ts';
import { SHADOW_LIMIT, type Args, type GpuContext, type GpuData, type Lane } from './context.ts';
import * as elementwise from './elementwise.ts';
import * as reduce from './reduce.ts';
import * as matmul from './matmul.ts';
import * as layout from './layout.ts';
import * as rows from './rows.ts';
import * as attention from './attention.ts';
import * as adam from './adam.ts';
import { WebGpuBuffer, webGpuBlocker, type WebGpuQueue } from './webgpu.ts';

export type { GpuMode } from './gpujs.ts';
export type { GpuData } from './context.ts';
export { probeWebGpu, type WebGpuProbe } from './webgpu.ts';

export interface GpuBackendOptions {
  /**
   * A gpu.js mode, or 'auto' (headlessgl, then webgl2, webasm, cpu). Default: env LOWRANK_GPU_MODE, else 'auto'.
   * 'webgpu' is never chosen by 'auto' (its adapter answers only asynchronously, and its tensors read back
   * only through `await t.data()`): ask for it by name after `await probeWebGpu()`.
   */
  mode?: GpuMode | 'auto';
  name?: string;
  /** Most compiled kernels kept (least recently used evicted and destroyed). Default 256 in GL and webgpu modes, 96 elsewhere (each webasm kernel holds a WebAssembly.Memory). */
  maxKernels?: number;
}

const AUTO_ORDER: readonly GpuMode[] = ['headlessgl', 'webgl2', 'webasm', 'cpu'];
let warnedFallback = false;

function envMode(): string | undefined {
  return typeof process !== 'undefined' ? process.env.LOWRANK_GPU_MODE : undefined;
}

function isGpuMode(m: string): m is GpuMode {
  return (GPU_MODES as readonly string[]).includes(m);
}

function unavailable(mode: GpuMode, why: string): Error {
  const hint = mode === 'headlessgl'
    ? ' (headless-gl needs the `gl` package built and an X display: run under `xvfb-run -a`)'
    : mode === 'webgpu' ? ` (${webGpuBlocker() ?? 'WebGPU'})` : '';
  return new Error(`gpu backend: gpu.js mode '${mode}' was requested but cannot run here${hint}: ${why}`);
}

/** Which gpu.js modes can start here, in auto-selection order. */
export function probeGpuModes(): Record<GpuMode, boolean> {
  gpuJs(); // not loaded (a browser before loadGpuJs): say so rather than report every mode unsupported
  const out = {} as Record<GpuMode, boolean>;
  for (const m of GPU_MODES) {
    try {
      out[m] = modeSupported(m);
    } catch {
      out[m] = false;
    }
  }
  return out;
}

function openMode(requested: string | undefined): GpuJs {
  const want = requested ?? 'auto';
  if (want !== 'auto') {
    if (!isGpuMode(want)) {
      throw new Error(`gpu backend: unknown gpu.js mode '${want}' (expected one of auto, ${GPU_MODES.join(', ')})`);
    }
    if (!modeSupported(want)) throw unavailable(want, 'gpu.js reports it unsupported');
    try {
      return new GpuJs(want);
    } catch (e) {
      throw unavailable(want, (e as Error).message);
    }
  }
  const errors: string[] = [];
  for (const m of AUTO_ORDER) {
    let ok = false;
    try {
      ok = modeSupported(m);
    } catch (e) {
      errors.push(`${m}: ${(e as Error).message}`);
    }
    if (!ok) {
      errors.push(`${m}: unsupported`);
      continue;
    }
    try {
      const g = new GpuJs(m);
      const inNode = typeof process !== 'undefined' && !!process.versions?.node;
      if (inNode && m !== 'headlessgl' && !warnedFallback) {
        warnedFallback = true;
        console.warn(`lowrank gpu backend: headless-gl unavailable (${errors.join('; ')}); running gpu.js in '${m}' mode`);
      }
      return g;
    } catch (e) {
      errors.push(`${m}: ${(e as Error).message}`);
    }
  }
  throw new Error(`gpu backend: gpu.js could not start any mode (${errors.join('; ')})`);
}

/**
 * gpu.js kernels: tensors stay on the device (textures in GL modes, typed
 * arrays in webasm/cpu) between ops; values come back only in `download`.
 * `new GpuBackend({ mode: 'webasm' })`
 */
export class GpuBackend implements Backend<GpuData> {
  readonly name: string;
  readonly mode: GpuMode;
  readonly hasStorage = true;
  /** Device buffers alive (storages handed out and not yet freed). */
  liveBuffers = 0;
  /** Internal readbacks (index validation without a host copy). */
  internalReadbacks = 0;
  private readonly gj: GpuJs;
  private readonly cache: KernelCache;
  private readonly host = new CpuBackend('gpu-host');
  private readonly intCast: 'floor' | 'or';
  /** What the kernel files (elementwise.ts ... adam.ts) dispatch through. */
  private readonly ctx: GpuContext;
  /** webgpu: the order of its dispatches, reads and frees (null in other modes). */
  readonly queue: WebGpuQueue | null;

  constructor(opts: GpuBackendOptions = {}) {
    this.name = opts.name ?? 'gpu';
    this.gj = openMode(opts.mode ?? envMode());
    this.mode = this.gj.mode;
    this.intCast = isGlMode(this.mode) ? 'floor' : 'or';
    this.queue = this.gj.queue;
    this.cache = new KernelCache(opts.maxKernels ?? (isDeviceMode(this.mode) ? 256 : 96));
    this.ctx = {
      mode: this.mode, host: this.host, gen: () => this.gen(), run: (s, a, h) => this.run(s, a, h), exec: (s, a) => this.exec(s, a),
      lanes: (s, a, k) => this.lanes(s, a, k), wrap: (b, n, h, o) => this.wrap(b, n, h, o), zeros: (n) => this.zeros(n),
      free: (d) => this.free(d), tmpFree: (d) => this.tmpFree(d), hostInts: (d, n) => this.hostInts(d, n),
      packedPair: (a, b) => this.packedPair(a, b), laneArg: (d) => this.laneArg(d),
    };
  }

  /** Kernels gpu.js ran in another mode than `mode` (should stay 0). */
  get degradedKernels(): number {
    return this.gj.degraded;
  }

  /** Compiled kernels held in the cache. */
  get compiledKernels(): number {
    return this.cache.size;
  }

  /** Kernels compiled since construction (cache misses). */
  get kernelCompiles(): number {
    return this.cache.compiles;
  }

  /** Most kernels the cache holds (`maxKernels`). */
  get kernelBound(): number {
    return this.cache.limit;
  }

  /** Kernels the cache destroyed to stay within its bound. */
  get kernelEvictions(): number {
    return this.cache.evictions;
  }

  /** false on webgpu: values come back only through `await t.data()`. */
  get syncReadback(): boolean {
    return this.mode !== 'webgpu';
  }

  get maxTextureSize(): number {
    return this.gj.maxTextureSize;
  }

  bytesPerElement(_dtype: DType): number {
    return 4;
  }

  private gen(): CodeGen {
    return new CodeGen(this.intCast);
  }

  private checkSize(n: number): void {
    const max = this.gj.maxTextureSize;
    if (n > max * max) {
      throw new Error(
        `gpu backend (${this.mode}): ${n} elements exceed the largest texture, ${max} x ${max} = ${max * max} (MAX_TEXTURE_SIZE ${max})`,
      );
    }
  }

  private wrap(buf: DeviceBuffer | null, size: number, host: Int32Array | null = null, owner?: { live: number }): GpuData {
    if (buf) this.liveBuffers++;
    if (buf && owner) owner.live++;
    return owner ? { buf, size, host, owner } : { buf, size, host };
  }

  /** Dispatches per kernel family since construction (bench accounting). */
  readonly dispatchCounts = new Map<string, number>();

  /** Counts one device dispatch, its host-array arguments (uploads) and the buffer it allocates. */
  private account(name: string, hostArgs: number, out: DeviceBuffer | null): void {
    const s = statsOf(this);
    s.dispatches++;
    s.uploads += hostArgs;
    if (out) s.textureBytes += bufferBytes(out);
    this.dispatchCounts.set(name, (this.dispatchCounts.get(name) ?? 0) + 1);
  }

  /**
   * Runs a generated kernel: buffer arguments, then the spec's integer and
   * float uniforms (sizes and scalars travel as uniforms, never as uploads).
   */
  private exec(
    spec: src.KernelSpec, args: readonly (GpuData | Float32Array)[], hostUploads = true,
  ): { out: DeviceBuffer; extra: DeviceBuffer[]; owner?: { live: number } } | null {
    if (spec.size === 0) return null;
    this.checkSize(spec.size);
    const bufs: KernelArg[] = args.map((x) => (x instanceof Float32Array ? x : this.bufOf(x)));
    const all: KernelArg[] = [...bufs, ...spec.ints, ...spec.floats];
    const nb = bufs.length;
    const ni = spec.ints.length;
    const types = all.map((a, i) => argumentType(a, i >= nb && i < nb + ni));
    // NOTE: gpu.js's webasm kernels bake every size into the module (a size
    // change rebuilds it, and each kernel keeps only 8), so there one kernel
    // serves one size signature; GL kernels read sizes from uniforms.
    const sizes = isDeviceMode(this.mode) ? '' : `${spec.size}:${bufs.map((b) => (b as Float32Array).length).join(',')}`;
    const shape = `${sizes}|${types.join(',')}|${spec.raw?.result ?? ''}|${(spec.subKernels ?? []).join('|')}`;
    const entry = this.entry({ src: spec.src, helpers: spec.raw?.helpers ?? '', shape, loop: spec.loop }, spec, types);
    if (this.queue) this.queue.label = spec.name;
    const [out, ...extra] = entry.kernel.run(spec.size, all);
    this.account(spec.name, hostUploads ? args.filter((x) => x instanceof Float32Array).length : 0, out);
    for (const b of extra) statsOf(this).textureBytes += bufferBytes(b);
    return { out, extra, owner: isGlMode(this.mode) ? entry : undefined };
  }

  /** A compiled kernel from the cache; a miss counts as a compile. */
  private entry(key: KernelKey, spec: src.KernelSpec, types: readonly string[]) {
    const before = this.cache.compiles;
    const e = this.cache.get(key, (bucket) => {
      const names = argNames(spec.src);
      if (names.length !== types.length) throw new Error(`gpu backend: kernel '${spec.name}' takes ${names.length} arguments, given ${types.length}`);
      return this.gj.compile(spec.src, bucket, Object.fromEntries(names.map((n, i) => [n, types[i]])), spec.raw, spec.subKernels);
    });
    if (this.cache.compiles !== before) statsOf(this).compiles++;
    return e;
  }

  private run(spec: src.KernelSpec, args: readonly (GpuData | Float32Array)[], host: Int32Array | null = null): GpuData {
    const r = this.exec(spec, args);
    return this.wrap(r ? r.out : null, spec.size, host, r?.owner);
  }

  private bufOf(d: GpuData): DeviceBuffer {
    if (!d.buf) throw new Error('gpu backend: an empty or freed storage was passed to a kernel');
    if (d.lane) this.densify(d);
    return d.buf as DeviceBuffer;
  }

  /**
   * Runs a fused kernel whose output packs `k` results as lanes ([n, k]) and
   * returns one storage per lane, all sharing the buffer (freed with the last).
   */
  private lanes(spec: src.KernelSpec, args: readonly (GpuData | Float32Array)[], k: number): GpuData[] {
    const n = spec.size / k;
    const r = this.exec(spec, args);
    if (!r) return Array.from({ length: k }, () => this.wrap(null, n));
    const shared = { refs: k };
    if (r.owner) r.owner.live++;
    return Array.from({ length: k }, (_, index) => {
      this.liveBuffers++;
      return { buf: r.out, size: n, host: null, owner: r.owner, lane: { stride: k, index, shared } };
    });
  }

  /** The packed [n, 2] buffer when a and b are its lanes 0 and 1, for kernels that read it directly; else null. */
  private packedPair(a: GpuData, b: GpuData): GpuData | null {
    const la = a.lane;
    const lb = b.lane;
    if (!la || !lb || !a.buf || a.buf !== b.buf || la.stride !== 2 || la.index !== 0 || lb.index !== 1) return null;
    return { buf: a.buf, size: a.size * 2, host: null };
  }

  /** A storage as a kernel argument read in place: its whole buffer, and where its elements sit in it. */
  private laneArg(d: GpuData): { arg: GpuData; stride: number; index: number } {
    if (!d.lane) return { arg: d, stride: 1, index: 0 };
    return { arg: { buf: d.buf, size: d.size * d.lane.stride, host: null }, stride: d.lane.stride, index: d.lane.index };
  }

  /** Copies a lane out into a buffer of its own (for a kernel that reads plain storage). */
  private densify(d: GpuData): void {
    const lane = d.lane as Lane;
    const whole: GpuData = { buf: d.buf, size: d.size * lane.stride, host: null };
    const r = this.exec(src.strided(this.gen(), [d.size], [lane.stride], lane.index), [whole]);
    this.dropBuffer(d);
    d.lane = undefined;
    d.buf = r ? r.out : null;
    d.owner = r?.owner;
    if (r?.owner) r.owner.live++;
  }

  /** Releases d's hold on its device buffer (deleted when no lane sibling holds it). */
  private dropBuffer(d: GpuData): void {
    const shared = d.lane?.shared;
    if (shared && --shared.refs > 0) return;
    if (d.buf) deleteBuffer(d.buf);
    if (d.owner) d.owner.live--;
  }

  private tmpFree(d: GpuData | null): void {
    if (d) this.free(d);
  }

  private zeros(size: number): GpuData {
    return this.fill({ inputs: {}, attrs: { size, value: 0, dtype: 'float32' } });
  }

  /** NOTE: bfloat16 and float16 are rounded, then stored widened in a float32 texture (4 bytes each). */
  upload(values: ArrayLike<number>, dtype: DType): GpuData {
    const n = values.length;
    const f = isHalfDtype(dtype) ? widen(toHalf(dtype, values)) : values instanceof Float32Array ? values : Float32Array.from(values);
    const host = !isFloatDtype(dtype) && n <= SHADOW_LIMIT ? Int32Array.from(values) : null;
    if (n === 0) return this.wrap(null, 0, host);
    this.checkSize(n);
    if (!isDeviceMode(this.mode)) {
      const buf = f === values ? f.slice() : f;
      statsOf(this).textureBytes += bufferBytes(buf);
      return this.wrap(buf, n, host);
    }
    // webgpu reads f when the queue reaches the copy: a caller's array is copied first.
    const r = this.exec(src.copy(this.gen(), n), [this.queue && f === values ? f.slice() : f], false); // the tensor layer counts this upload
    return this.wrap(r ? r.out : null, n, host, r?.owner);
  }

  download(data: unknown, dtype: DType, size: number): HostArray {
    const d = data as GpuData;
    if (!isFloatDtype(dtype) && d.host) return d.host.slice(0, size);
    return toDtype(d.buf ? this.readLane(d, size) : new Float32Array(size), dtype);
  }

  /** webgpu: the read waits for the dispatches issued before it (and is issued before any later free). */
  async downloadAsync(data: unknown, dtype: DType, size: number): Promise<HostArray> {
    const d = data as GpuData;
    if (!(d.buf instanceof WebGpuBuffer) || (!isFloatDtype(dtype) && d.host)) return this.download(d, dtype, size);
    const lane = d.lane ?? { stride: 1, index: 0 };
    const all = await d.buf.read(d.size * lane.stride);
    const f = lane.stride === 1 ? all.subarray(0, size) : Float32Array.from({ length: size }, (_, i) => all[i * lane.stride + lane.index]);
    return toDtype(f, dtype);
  }

  /** webgpu: resolves once every dispatch and free issued so far has been submitted. */
  async flush(): Promise<void> {
    await this.queue?.flush();
  }

  private readLane(d: GpuData, size: number): Float32Array {
    const lane = d.lane;
    if (!lane) return readBuffer(d.buf as DeviceBuffer, size);
    const all = readBuffer(d.buf as DeviceBuffer, d.size * lane.stride);
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = all[i * lane.stride + lane.index];
    return out;
  }

  free(data: unknown): void {
    const d = data as GpuData;
    if (!d.buf) return;
    this.dropBuffer(d);
    d.lane = undefined;
    d.owner = undefined;
    d.buf = null;
    d.host = null;
    this.liveBuffers--;
  }

  /**
   * The int32 values of an index storage: the host copy, else a (counted) readback
   * kept as its host copy (storages are immutable), so crossEntropy's forward and
   * backward, or repeated gathers, read a device-made index only once.
   */
  private hostInts(d: GpuData, size: number): Int32Array {
    if (d.host) return d.host;
    this.internalReadbacks++;
    countReadback(this);
    const h = this.download(d, 'int32', size) as Int32Array;
    if (size <= SHADOW_LIMIT) d.host = h;
    return h;
  }

  fill(a: Args<'fill'>): GpuData {
    return elementwise.fill(this.ctx, a);
  }

  cast(a: Args<'cast'>): GpuData {
    return elementwise.cast(this.ctx, a);
  }

  unary(a: Args<'unary'>): GpuData {
    return elementwise.unary(this.ctx, a);
  }

  unaryGrad(a: Args<'unaryGrad'>): GpuData {
    return elementwise.unaryGrad(this.ctx, a);
  }

  affine(a: Args<'affine'>): GpuData {
    return elementwise.affine(this.ctx, a);
  }

  powScalar(a: Args<'powScalar'>): GpuData {
    return elementwise.powScalar(this.ctx, a);
  }

  binary(a: Args<'binary'>): GpuData {
    return elementwise.binary(this.ctx, a);
  }

  where(a: Args<'where'>): GpuData {
    return elementwise.where(this.ctx, a);
  }

  reduce(a: Args<'reduce'>): GpuData {
    return reduce.reduce(this.ctx, a);
  }

  matmul(a: Args<'matmul'>): GpuData {
    return matmul.matmul(this.ctx, a);
  }

  strided(a: Args<'strided'>): GpuData {
    return layout.strided(this.ctx, a);
  }

  stridedAdd(a: Args<'stridedAdd'>): GpuData {
    return layout.stridedAdd(this.ctx, a);
  }

  concat(a: Args<'concat'>): GpuData {
    return layout.concat(this.ctx, a);
  }

  gather(a: Args<'gather'>): GpuData {
    return layout.gather(this.ctx, a);
  }

  scatterAdd(a: Args<'scatterAdd'>): GpuData {
    return layout.scatterAdd(this.ctx, a);
  }

  indexSelect(a: Args<'indexSelect'>): GpuData {
    return layout.indexSelect(this.ctx, a);
  }

  indexAdd(a: Args<'indexAdd'>): GpuData {
    return layout.indexAdd(this.ctx, a);
  }

  softmax(a: Args<'softmax'>): GpuData {
    return rows.softmax(this.ctx, a);
  }

  softmaxGrad(a: Args<'softmaxGrad'>): GpuData {
    return rows.softmaxGrad(this.ctx, a);
  }

  crossEntropy(a: Args<'crossEntropy'>): GpuData {
    return rows.crossEntropy(this.ctx, a);
  }

  crossEntropyGrad(a: Args<'crossEntropyGrad'>): GpuData {
    return rows.crossEntropyGrad(this.ctx, a);
  }

  layerNorm(a: Args<'layerNorm'>) {
    return rows.layerNorm(this.ctx, a);
  }

  layerNormGrad(a: Args<'layerNormGrad'>) {
    return rows.layerNormGrad(this.ctx, a);
  }

  rmsNorm(a: Args<'rmsNorm'>) {
    return rows.rmsNorm(this.ctx, a);
  }

  rmsNormGrad(a: Args<'rmsNormGrad'>) {
    return rows.rmsNormGrad(this.ctx, a);
  }

  attention(a: Args<'attention'>) {
    return attention.attention(this.ctx, a);
  }

  attentionGrad(a: Args<'attentionGrad'>) {
    return attention.attentionGrad(this.ctx, a);
  }

  adamUpdate(a: Args<'adamUpdate'>): { p: GpuData; m: GpuData; v: GpuData } {
    return adam.adamUpdate(this.ctx, a);
  }

}

function toDtype(f: Float32Array, dtype: DType): HostArray {
  if (isFloatDtype(dtype)) return f;
  const out = new Int32Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = Math.round(f[i]);
  return out;
}

/** Argument names of a generated `function (a, b, ...) {` source. */
function argNames(source: string): string[] {
  const open = source.indexOf('(');
  const close = source.indexOf(')');
  return source.slice(open + 1, close).split(',').map((a) => a.trim()).filter((a) => a.length > 0);
}
