import {
  isFloatDtype, isHalfDtype, type Backend, type DType, type HostArray, type KernelArgs, type KernelName,
} from '../../backend.ts';
import { checkIndices, countValidTargets } from '../checks.ts';
import { toHalf, widen } from '../cpu/half.ts';
import { countReadback, statsOf } from '../../engine.ts';
import { sizeOf, type Shape } from '../../shape.ts';
import { CpuBackend } from '../cpu/index.ts';
import { KernelCache, loopBucket } from './cache.ts';
import { CodeGen } from './codegen.ts';
import {
  GPU_MODES, GpuJs, argumentType, bufferBytes, deleteBuffer, isGlMode, modeSupported, readBuffer,
  type DeviceBuffer, type GpuMode, type KernelArg,
} from './gpujs.ts';
import { gpuJs } from './load.ts';
import { glMatmul, glMatmulFits } from './matmul-gl.ts';
import { glAttention, glAttentionDv, glAttentionFits } from './attention-gl.ts';
import * as src from './sources.ts';

export type { GpuMode } from './gpujs.ts';

/** A gpu storage: a device buffer (null when empty), plus a host copy of small int32 data for index checks. */
export interface GpuData {
  buf: DeviceBuffer | null;
  size: number;
  host: Int32Array | null;
  /** The cache entry of the kernel that made it (GL: it must outlive its textures). */
  owner?: { live: number };
  /** Set when this storage is one lane of a packed buffer shared with its siblings: element i is buf[i * stride + index]. */
  lane?: Lane;
}

/** One of `stride` results a fused kernel packed into one buffer; `shared.refs` siblings still hold it. */
interface Lane {
  stride: number;
  index: number;
  shared: { refs: number };
}

export interface GpuBackendOptions {
  /** A gpu.js mode, or 'auto' (headlessgl, then webgl2, webasm, cpu). Default: env LOWRANK_GPU_MODE, else 'auto'. */
  mode?: GpuMode | 'auto';
  name?: string;
  /** Most compiled kernels kept (least recently used evicted and destroyed). Default 256 in GL modes, 96 elsewhere (each webasm kernel holds a WebAssembly.Memory). */
  maxKernels?: number;
}

/** A loop reuses a kernel compiled for a loop up to this many times longer (its iterations past the bound only test and break). */
const MAX_LOOP_REUSE = 64;

/** Trailing sums longer than this take two passes (chunk sums, then their sum). */
const CHUNKED_SUM = 4096;

/** Largest int32 storage that keeps a host shadow for index validation. */
const SHADOW_LIMIT = 1 << 22;
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
    : '';
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
type Args<K extends KernelName> = KernelArgs<GpuData, K>;

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

  constructor(opts: GpuBackendOptions = {}) {
    this.name = opts.name ?? 'gpu';
    this.gj = openMode(opts.mode ?? envMode());
    this.mode = this.gj.mode;
    this.intCast = isGlMode(this.mode) ? 'floor' : 'or';
    this.cache = new KernelCache(this.gj, opts.maxKernels ?? (isGlMode(this.mode) ? 256 : 96));
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

  /** Kernels the cache destroyed to stay within its bound. */
  get kernelEvictions(): number {
    return this.cache.evictions;
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
    const sizes = isGlMode(this.mode) ? '' : `${spec.size}:${bufs.map((b) => (b as Float32Array).length).join(',')}|`;
    const raw = (spec.raw ? `${spec.raw.helpers}|${spec.raw.result}|` : '') + (spec.subKernels ?? []).join('|');
    const rest = `|${types.join(',')}|${raw}${spec.src}`;
    // A kernel compiled for a longer loop serves a shorter one (loops stop at their uniform bound).
    let bucket = loopBucket(spec.loop);
    for (let b = bucket; b <= MAX_LOOP_REUSE * bucket; b *= 2) {
      if (this.cache.has(`${sizes}${b}${rest}`)) {
        bucket = b;
        break;
      }
    }
    const entry = this.entry(`${sizes}${bucket}${rest}`, spec, bucket, types);
    const [out, ...extra] = entry.kernel.run(spec.size, all);
    this.account(spec.name, hostUploads ? args.filter((x) => x instanceof Float32Array).length : 0, out);
    for (const b of extra) statsOf(this).textureBytes += bufferBytes(b);
    return { out, extra, owner: isGlMode(this.mode) ? entry : undefined };
  }

  /** A compiled kernel from the cache; a miss counts as a compile. */
  private entry(key: string, spec: src.KernelSpec, bucket: number, types: readonly string[]) {
    const before = this.cache.compiles;
    const e = this.cache.get(key, () => {
      const names = argNames(spec.src);
      if (names.length !== types.length) throw new Error(`gpu backend: kernel '${spec.name}' takes ${names.length} arguments, given ${types.length}`);
      return this.cache.compile(spec.src, bucket, Object.fromEntries(names.map((n, i) => [n, types[i]])), spec.raw, spec.subKernels);
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
    if (!isGlMode(this.mode)) {
      const buf = f === values ? f.slice() : f;
      statsOf(this).textureBytes += bufferBytes(buf);
      return this.wrap(buf, n, host);
    }
    const r = this.exec(src.copy(this.gen(), n), [f], false); // the tensor layer counts this upload
    return this.wrap(r ? r.out : null, n, host, r?.owner);
  }

  download(data: unknown, dtype: DType, size: number): HostArray {
    const d = data as GpuData;
    if (!isFloatDtype(dtype) && d.host) return d.host.slice(0, size);
    const f = d.buf ? this.readLane(d, size) : new Float32Array(size);
    if (isFloatDtype(dtype)) return f;
    const out = new Int32Array(size);
    for (let i = 0; i < size; i++) out[i] = Math.round(f[i]);
    return out;
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

  /** The int32 values of an index storage: the host copy, else a (counted) readback. */
  private hostInts(d: GpuData, size: number): Int32Array {
    if (d.host) return d.host;
    this.internalReadbacks++;
    countReadback(this);
    return this.download(d, 'int32', size) as Int32Array;
  }

  fill({ attrs: { size, value, dtype } }: Args<'fill'>): GpuData {
    const host = !isFloatDtype(dtype) && size <= SHADOW_LIMIT ? new Int32Array(size).fill(value) : null;
    return this.run(src.fill(this.gen(), size, value), [], host);
  }

  cast({ inputs: { x }, attrs: { size, to } }: Args<'cast'>): GpuData {
    if (isFloatDtype(to) || x.host) {
      const host = !isFloatDtype(to) && x.host ? x.host.slice(0, size) : null;
      return this.run(src.copy(this.gen(), size), [x], host);
    }
    return this.run(src.truncate(this.gen(), size), [x]);
  }

  unary({ inputs: { x }, attrs: { op, size } }: Args<'unary'>): GpuData {
    return this.run(src.unary(this.gen(), op, size), [x]);
  }

  unaryGrad({ inputs: { x, y, dy }, attrs: { op, size } }: Args<'unaryGrad'>): GpuData {
    const args = [...(x ? [x] : []), ...(y ? [y] : []), dy];
    return this.run(src.unaryGrad(this.gen(), op, !!x, !!y, size), args);
  }

  affine({ inputs: { x }, attrs: { size, scale, shift } }: Args<'affine'>): GpuData {
    return this.run(src.affine(this.gen(), size, scale, shift), [x]);
  }

  powScalar({ inputs: { x }, attrs: { size, exponent } }: Args<'powScalar'>): GpuData {
    return this.run(src.powScalar(this.gen(), size, exponent), [x]);
  }

  binary({ inputs: { a, b }, attrs: { op, aShape, bShape, outShape } }: Args<'binary'>): GpuData {
    return this.run(src.binary(this.gen(), op, aShape, bShape, outShape), [a, b]);
  }

  where({ inputs: { cond, a, b }, attrs: { cShape, aShape, bShape, outShape } }: Args<'where'>): GpuData {
    return this.run(src.where(this.gen(), cShape, aShape, bShape, outShape), [cond, a, b]);
  }

  reduce({ inputs: { x }, attrs: { op, shape, axes } }: Args<'reduce'>): GpuData {
    const keptSize = sizeOf(shape.filter((_, i) => !axes.includes(i)));
    const R = sizeOf(axes.map((a) => shape[a]));
    if (R === 0) return this.fill({ inputs: {}, attrs: { size: keptSize, value: op === 'sum' ? 0 : -Infinity, dtype: 'float32' } });
    const trailing = axes.every((a, i) => a === shape.length - axes.length + i);
    if (op === 'sum' && trailing && R > CHUNKED_SUM) {
      // NOTE: one float32 accumulator over 1e6 values drifts ~1%; sums of
      // sqrt(R)-long chunks, then of the chunk sums, stay near float32 epsilon.
      const chunk = Math.ceil(Math.sqrt(R));
      const parts = this.run(src.chunkSums(this.gen(), keptSize, R, chunk), [x]);
      const out = this.run(src.reduce(this.gen(), 'sum', [keptSize, Math.ceil(R / chunk)], [1]), [parts]);
      this.free(parts);
      return out;
    }
    return this.run(src.reduce(this.gen(), op, shape, axes), [x]);
  }

  matmul({ inputs: { a, b, bias = null }, attrs: { aShape, bShape, transA, transB, outShape } }: Args<'matmul'>): GpuData {
    const k = transA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
    if (k === 0 && !bias) return this.zeros(sizeOf(outShape));
    const spec = isGlMode(this.mode) && glMatmulFits(outShape)
      ? this.glMatmulSpec(aShape, bShape, transA, transB, outShape, bias !== null)
      : src.matmul(this.gen(), aShape, bShape, transA, transB, outShape, bias !== null);
    return this.run(spec, bias ? [a, b, bias] : [a, b]);
  }

  private glMatmulSpec(aShape: Shape, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape, bias: boolean): src.KernelSpec {
    const g = glMatmul(aShape, bShape, transA, transB, outShape, bias, this.mode === 'webgl2');
    return { name: 'matmul4', src: g.src, raw: g.raw, size: g.size, loop: g.loop, ints: g.ints, floats: [] };
  }

  strided({ inputs: { x }, attrs: { outShape, strides, offset } }: Args<'strided'>): GpuData {
    const host = x.host ? (this.host.strided({ inputs: { x: x.host }, attrs: { outShape, strides, offset } }) as Int32Array) : null;
    if (sizeOf(outShape) === 0) return this.wrap(null, 0, host);
    return this.run(src.strided(this.gen(), outShape, strides, offset), [x], host);
  }

  stridedAdd({ inputs: { dy }, attrs: { dyShape, strides, offset, outSize } }: Args<'stridedAdd'>): GpuData {
    if (sizeOf(dyShape) === 0) return this.zeros(outSize);
    if (!src.stridesNest(dyShape, strides) && sizeOf(dyShape) * outSize > 1e9) {
      throw new Error(`gpu backend: stridedAdd with overlapping strides ${JSON.stringify(strides)} over ${sizeOf(dyShape)} x ${outSize} cells is too large`);
    }
    return this.run(src.stridedAdd(this.gen(), dyShape, strides, offset, outSize), [dy]);
  }

  concat({ inputs: { xs }, attrs: { shapes, axis, outShape } }: Args<'concat'>): GpuData {
    const host = xs.every((x) => x.host)
      ? (this.host.concat({ inputs: { xs: xs.map((x) => x.host as Int32Array) }, attrs: { shapes, axis, outShape } }) as Int32Array)
      : null;
    if (sizeOf(outShape) === 0) return this.wrap(null, 0, host);
    const pieces: { x: GpuData; row: number; start: number }[] = [];
    let start = 0;
    xs.forEach((x, i) => {
      const row = sizeOf(shapes[i].slice(axis));
      if (sizeOf(shapes[i]) > 0) pieces.push({ x, row, start });
      start += row;
    });
    const GROUP = 6;
    let acc: GpuData | null = null;
    for (let p = 0; p < pieces.length; p += GROUP) {
      const group = pieces.slice(p, p + GROUP);
      const spec = src.concatGroup(this.gen(), group, outShape, axis, acc !== null);
      const args = [...(acc ? [acc] : []), ...group.map((g) => g.x)];
      const next = this.run(spec, args);
      this.tmpFree(acc);
      acc = next;
    }
    const out = acc ?? this.zeros(sizeOf(outShape));
    out.host = host;
    return out;
  }

  gather({ inputs: { x, index }, attrs: { xShape, indexShape, axis } }: Args<'gather'>): GpuData {
    const n = sizeOf(indexShape);
    if (n === 0) return this.wrap(null, 0);
    checkIndices('gather', this.hostInts(index, n), n, xShape[axis]);
    return this.run(src.gather(this.gen(), xShape, indexShape, axis), [x, index]);
  }

  scatterAdd({ inputs: { dy, index }, attrs: { indexShape, axis, outShape } }: Args<'scatterAdd'>): GpuData {
    if (sizeOf(indexShape) === 0) return this.zeros(sizeOf(outShape));
    return this.run(src.scatterAdd(this.gen(), indexShape, axis, outShape), [dy, index]);
  }

  indexSelect({ inputs: { x, index }, attrs: { xShape, count, axis } }: Args<'indexSelect'>): GpuData {
    const outSize = sizeOf(xShape.slice(0, axis)) * count * sizeOf(xShape.slice(axis + 1));
    if (count > 0) checkIndices('indexSelect', this.hostInts(index, count), count, xShape[axis]);
    if (outSize === 0) return this.wrap(null, 0);
    return this.run(src.indexSelect(this.gen(), xShape, count, axis), [x, index]);
  }

  indexAdd({ inputs: { dy, index }, attrs: { count, axis, xShape } }: Args<'indexAdd'>): GpuData {
    const n = xShape[axis];
    if (count === 0 || sizeOf(xShape) === 0) return this.zeros(sizeOf(xShape));
    // NOTE: a CSR of the indices (built on the host) turns the scatter into a
    // gather: each output row sums only the dy rows that point at it.
    const idx = this.hostInts(index, count);
    const starts = new Float32Array(n + 1);
    for (let i = 0; i < count; i++) if (idx[i] >= 0 && idx[i] < n) starts[idx[i] + 1]++;
    let maxDup = 0;
    for (let r = 0; r < n; r++) {
      maxDup = Math.max(maxDup, starts[r + 1]);
      starts[r + 1] += starts[r];
    }
    const fillAt = starts.slice(0, n);
    const perm = new Float32Array(Math.max(1, count));
    for (let i = 0; i < count; i++) if (idx[i] >= 0 && idx[i] < n) perm[fillAt[idx[i]]++] = i;
    if (maxDup === 0) return this.zeros(sizeOf(xShape));
    return this.run(src.indexAdd(this.gen(), xShape, count, axis, maxDup), [dy, starts, perm]);
  }

  softmax({ inputs: { x }, attrs: { rows, cols, log } }: Args<'softmax'>): GpuData {
    if (rows * cols === 0) return this.wrap(null, 0);
    if (cols <= src.ONE_PASS_COLS) return this.run(src.softmaxRows(this.gen(), rows, cols, log, true), [x]);
    const st = this.run(src.rowStats(this.gen(), rows, cols), [x]);
    const y = this.run(src.softmaxRows(this.gen(), rows, cols, log, false), [x, st]);
    this.free(st);
    return y;
  }

  softmaxGrad({ inputs: { y, dy }, attrs: { rows, cols, log } }: Args<'softmaxGrad'>): GpuData {
    if (rows * cols === 0) return this.wrap(null, 0);
    const s = this.run(src.softmaxGradRow(this.gen(), rows, cols, log), [y, dy]);
    const dx = this.run(src.softmaxGradApply(this.gen(), rows, cols, log), [y, dy, s]);
    this.free(s);
    return dx;
  }

  private countValid(targets: GpuData, rows: number, cols: number, ignoreIndex: number): number {
    return countValidTargets(this.hostInts(targets, rows), rows, cols, ignoreIndex);
  }

  crossEntropy({ inputs: { logits, targets }, attrs: { rows, cols, ignoreIndex, reduction } }: Args<'crossEntropy'>): GpuData {
    const valid = this.countValid(targets, rows, cols, ignoreIndex);
    // PyTorch: a mean over zero valid targets is NaN.
    const mult = reduction === 'mean' ? (valid === 0 ? NaN : 1 / valid) : 1;
    if (rows === 0) return this.fill({ inputs: {}, attrs: { size: 1, value: reduction === 'mean' ? NaN : 0, dtype: 'float32' } });
    const per = this.run(src.ceRows(this.gen(), rows, cols, ignoreIndex), [logits, targets]);
    const out = this.run(src.sumScaled(this.gen(), rows, mult), [per]);
    this.free(per);
    return out;
  }

  crossEntropyGrad({ inputs: { logits, targets, dy }, attrs: { rows, cols, ignoreIndex, reduction } }: Args<'crossEntropyGrad'>): GpuData {
    const valid = this.countValid(targets, rows, cols, ignoreIndex);
    if (rows * cols === 0) return this.wrap(null, 0);
    const mult = reduction === 'mean' ? 1 / valid : 1;
    if (cols <= src.ONE_PASS_COLS) return this.run(src.ceGradRows(this.gen(), rows, cols, ignoreIndex, mult, true), [logits, targets, dy]);
    const st = this.run(src.rowStats(this.gen(), rows, cols), [logits]);
    const dx = this.run(src.ceGradRows(this.gen(), rows, cols, ignoreIndex, mult, false), [logits, targets, dy, st]);
    this.free(st);
    return dx;
  }

  layerNorm({ inputs: { x, w, b }, attrs: { rows, cols, eps } }: Args<'layerNorm'>) {
    // Mean and rstd come from one dispatch, as two lanes of one buffer.
    const [mean, rstd] = this.lanes(src.lnStats(this.gen(), rows, cols, eps), [x], 2);
    const st = this.packedPair(mean, rstd);
    const args = [x, ...(st ? [st] : [mean, rstd]), ...(w ? [w] : []), ...(b ? [b] : [])];
    const y = this.run(src.normApplyStats(this.gen(), rows, cols, true, !!st, !!w, !!b), args);
    return { y, mean, rstd };
  }

  layerNormGrad({ inputs: { x, w, mean, rstd, dy }, attrs: { rows, cols, need } }: Args<'layerNormGrad'>) {
    const st = this.packedPair(mean, rstd);
    const stats = st ? [st] : [mean, rstd];
    return {
      dx: need.x ? this.normDx(x, stats, w, dy, rows, cols, true) : null,
      dw: need.w ? this.run(src.normColSum(this.gen(), rows, cols, true, !!st, true), [x, ...stats, dy]) : null,
      db: need.b ? this.run(src.normColSum(this.gen(), rows, cols, true, !!st, false), [dy]) : null,
    };
  }

  /** dx of a norm in two dispatches: packed row sums (sum g, sum g h), then dx. */
  private normDx(x: GpuData, stats: GpuData[], w: GpuData | null, dy: GpuData, rows: number, cols: number, centered: boolean): GpuData {
    const packed = centered && stats.length === 1;
    const ws = w ? [w] : [];
    const sums = this.run(src.normRowSums(this.gen(), rows, cols, centered, packed, !!w), [x, ...stats, dy, ...ws]);
    const dx = this.run(src.normDxSums(this.gen(), rows, cols, centered, packed, !!w), [x, ...stats, dy, sums, ...ws]);
    this.free(sums);
    return dx;
  }

  rmsNorm({ inputs: { x, w }, attrs: { rows, cols, eps } }: Args<'rmsNorm'>) {
    const rstd = this.run(src.rmsRstd(this.gen(), rows, cols, eps), [x]);
    const y = this.run(src.normApplyStats(this.gen(), rows, cols, false, false, !!w, false), [x, rstd, ...(w ? [w] : [])]);
    return { y, rstd };
  }

  rmsNormGrad({ inputs: { x, w, rstd, dy }, attrs: { rows, cols, need } }: Args<'rmsNormGrad'>) {
    return {
      dx: need.x ? this.normDx(x, [rstd], w, dy, rows, cols, false) : null,
      dw: need.w ? this.run(src.normColSum(this.gen(), rows, cols, false, false, true), [x, rstd, dy]) : null,
    };
  }

  private probs(q: GpuData, k: GpuData, lse: GpuData, bh: number, tq: number, tk: number, dk: number, scale: number, causal: boolean): GpuData {
    return this.run(src.attnProbs(this.gen(), bh, tq, tk, dk, causal, scale), [q, k, lse]);
  }

  attention({ inputs: { q, k, v }, attrs: { bh, tq, tk, dk, dv, scale, causal } }: Args<'attention'>) {
    const lse = this.run(src.attnLse(this.gen(), bh, tq, tk, dk, causal, scale), [q, k]);
    if (tk === 0) return { out: this.zeros(bh * tq * dv), lse };
    if (isGlMode(this.mode) && glAttentionFits(dk, dv, tk)) {
      const g = glAttention(bh, tq, tk, dk, dv, scale, causal, this.mode === 'webgl2');
      const spec: src.KernelSpec = { name: 'attention4', ...g };
      return { out: this.run(spec, [q, k, v, lse]), lse };
    }
    const p = this.probs(q, k, lse, bh, tq, tk, dk, scale, causal);
    const out = this.bmm([p, v], bh, tq, tk, dv, false);
    this.free(p);
    return { out, lse };
  }

  attentionGrad({ inputs: { q, k, v, out, lse, dout }, attrs: { bh, tq, tk, dk, dv, scale, causal, need } }: Args<'attentionGrad'>) {
    if (isGlMode(this.mode) && glAttentionFits(dk, dv, tk) && tq > 0) {
      // P is recomputed inside dV's and dS's kernels, never stored.
      const gv = glAttentionDv(bh, tq, tk, dk, dv, scale, causal, this.mode === 'webgl2');
      const dV = need.v ? this.run({ name: 'attentionDv4', ...gv }, [q, k, lse, dout]) : null;
      let dQ: GpuData | null = null;
      let dK: GpuData | null = null;
      if (need.q || need.k) {
        const ds = this.run(src.attnDsInline(this.gen(), bh, tq, tk, dk, dv, scale, causal), [q, k, lse, dout, v, out]);
        if (need.q) dQ = this.bmm([ds, k], bh, tq, tk, dk, false);
        if (need.k) dK = this.bmm([ds, q], bh, tk, tq, dk, true);
        this.free(ds);
      }
      return { dq: dQ, dk: dK, dv: dV };
    }
    const p = this.probs(q, k, lse, bh, tq, tk, dk, scale, causal);
    const dV = need.v ? this.bmm([p, dout], bh, tk, tq, dv, true) : null;
    let dQ: GpuData | null = null;
    let dK: GpuData | null = null;
    if (need.q || need.k) {
      const ds = this.run(src.attnDsFused(this.gen(), bh, tq, tk, dv, scale), [p, dout, v, out]);
      if (need.q) dQ = this.bmm([ds, k], bh, tq, tk, dk, false);
      if (need.k) dK = this.bmm([ds, q], bh, tk, tq, dk, true);
      this.free(ds);
    }
    this.free(p);
    return { dq: dQ, dk: dK, dv: dV };
  }

  /** out[h] = A[h] @ B[h] (A[h]^T when transA): A [bh, I, J] or [bh, J, I], B [bh, J, D]. */
  private bmm([a, b]: [GpuData, GpuData], bh: number, I: number, J: number, D: number, transA: boolean): GpuData {
    const aShape = transA ? [bh, J, I] : [bh, I, J];
    const outShape = [bh, I, D];
    if (isGlMode(this.mode) && glMatmulFits(outShape)) {
      return this.run(this.glMatmulSpec(aShape, [bh, J, D], transA, false, outShape, false), [a, b]);
    }
    return this.run(src.bmm(this.gen(), bh, I, J, D, transA), [a, b]);
  }

  adamUpdate({ inputs: { p, g, m, v }, attrs: { size, hyper } }: Args<'adamUpdate'>): { p: GpuData; m: GpuData; v: GpuData } {
    const { lr, beta1, beta2, eps, weightDecay, step, decoupled } = hyper;
    const bc1 = 1 - Math.pow(beta1, step);
    const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    const hp: src.AdamParams = {
      beta1, beta2, eps, weightDecay, stepSize: lr / bc1, bc2Sqrt, decay: decoupled ? 1 - lr * weightDecay : 1,
    };
    // NOTE: not in plain 'webgl' mode, where multiple render targets need an extension a browser may lack.
    if ((this.mode === 'headlessgl' || this.mode === 'webgl2') && !m.lane && !v.lane) {
      // One dispatch: the parameter is the result, m and v the sub-kernel outputs (multiple render targets).
      const r = this.exec(src.adamFused(this.gen(), decoupled, size, hp), [p, g, m, v]);
      if (!r) return { p: this.wrap(null, 0), m: this.wrap(null, 0), v: this.wrap(null, 0) };
      const [nm, nv] = r.extra;
      return { p: this.wrap(r.out, size, null, r.owner), m: this.wrap(nm, size, null, r.owner), v: this.wrap(nv, size, null, r.owner) };
    }
    // The new m and v come from one dispatch as two lanes of one buffer, which the next step reads in place.
    const [ma, va] = [this.laneArg(m), this.laneArg(v)];
    const args = [p, g, ma.arg, va.arg];
    const np = this.run(src.adamParam(this.gen(), decoupled, size, hp, ma, va), args);
    const [nm, nv] = this.lanes(src.adamMV(this.gen(), decoupled, size, hp, ma, va), args, 2);
    return { p: np, m: nm, v: nv };
  }
}

/** Argument names of a generated `function (a, b, ...) {` source. */
function argNames(source: string): string[] {
  const open = source.indexOf('(');
  const close = source.indexOf(')');
  return source.slice(open + 1, close).split(',').map((a) => a.trim()).filter((a) => a.length > 0);
}
