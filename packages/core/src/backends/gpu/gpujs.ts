import type { GPU, GPUVariableType, Texture } from 'gpu.js';
import { linNatives } from './codegen.ts';
import { gpuJs } from './load.ts';
import { patchKernelShader, type RawGl } from './shader-patch.ts';
import { WebGpuBuffer, WebGpuQueue, compileWebGpu, webGpuBlocker } from './webgpu.ts';

export type { RawGl } from './shader-patch.ts';

/** The gpu.js modes this backend drives. */
export type GpuMode = 'headlessgl' | 'webgl2' | 'webgl' | 'webgpu' | 'webasm' | 'cpu';
export const GPU_MODES: readonly GpuMode[] = ['headlessgl', 'webgl2', 'webgl', 'webgpu', 'webasm', 'cpu'];

/** What a kernel returns: a texture in GL modes (pipeline), a storage-buffer promise in webgpu, a typed array elsewhere. */
export type DeviceBuffer = Texture | WebGpuBuffer | Float32Array;
/** A kernel argument: a device buffer, a host array uploaded for that call, or a uniform. */
export type KernelArg = DeviceBuffer | number;

/** A compiled gpu.js kernel with flat 1-D outputs whose size is set per call: its result, then one per sub-kernel. */
export interface CompiledKernel {
  run(size: number, args: readonly KernelArg[]): DeviceBuffer[];
  destroy(): void;
}

export function isGlMode(mode: GpuMode): boolean {
  return mode === 'headlessgl' || mode === 'webgl2' || mode === 'webgl';
}

/** Whether values live on a device (GL textures, WebGPU buffers) rather than in host arrays (webasm, cpu). */
export function isDeviceMode(mode: GpuMode): boolean {
  return isGlMode(mode) || mode === 'webgpu';
}

export function isTexture(b: DeviceBuffer): b is Texture {
  // NOTE: not `instanceof Texture`, so this needs no loaded gpu.js: a buffer is one of the three.
  return !(b instanceof Float32Array) && !(b instanceof WebGpuBuffer);
}

/** The gpu.js argument type of a kernel argument. */
export function argumentType(a: KernelArg, integer: boolean): string {
  if (typeof a === 'number') return integer ? 'Integer' : 'Float';
  if (a instanceof WebGpuBuffer) return 'Array'; // bound as a storage buffer, like an uploaded array
  return isTexture(a) ? (a as unknown as { type: string }).type : 'Array';
}

interface KernelSettingsIn {
  output: number[];
  argumentTypes: Record<string, GPUVariableType>;
  dynamicOutput: boolean;
  dynamicArguments: boolean;
  pipeline: boolean;
  immutable: boolean;
  precision: 'single';
  strictIntegers: boolean;
  loopMaxIterations: number;
  tactic: 'precision';
  optimizeFloatMemory: boolean;
}

/** Which gpu.js mode would run, probing each explicitly and never silently. */
export function modeSupported(mode: GpuMode): boolean {
  const { GPU } = gpuJs();
  switch (mode) {
    case 'headlessgl':
      return GPU.isHeadlessGLSupported;
    case 'webgl2':
      return GPU.isWebGL2Supported;
    case 'webgl':
      return GPU.isWebGLSupported;
    case 'webgpu':
      return webGpuBlocker() === null;
    case 'webasm':
      return GPU.isWebAssemblySupported;
    case 'cpu':
      return true;
  }
}

/**
 * gpu.js wrapped once: one `GPU` instance, typed kernel creation, and the
 * reversed output order hidden behind flat 1-D outputs.
 */
export class GpuJs {
  readonly gpu: GPU;
  /** Largest texture side in GL modes (Infinity where there are no textures). */
  readonly maxTextureSize: number;
  /** webgpu: the order every dispatch, read and free of this backend runs in. */
  readonly queue: WebGpuQueue | null;

  constructor(readonly mode: GpuMode) {
    this.gpu = new (gpuJs().GPU)({ mode });
    // NOTE: gpu.mode echoes the request; the kernel class says what runs.
    const ran = kernelMode(this.gpu.Kernel as unknown as KernelClass);
    if (ran !== mode) throw new Error(`gpu backend: asked gpu.js for mode '${mode}' but it chose '${ran}'`);
    this.maxTextureSize = isGlMode(mode) ? probeMaxTextureSize(this.gpu) : Infinity;
    this.queue = mode === 'webgpu' ? new WebGpuQueue() : null;
    if (isGlMode(mode)) {
      for (const f of linNatives()) {
        this.gpu.addNativeFunction(f.name, f.source, { argumentTypes: f.argumentTypes, returnType: 'Integer' } as never);
      }
    }
  }

  /**
   * Compiles a kernel from source; its output size and argument sizes may
   * change per call (dynamicOutput/dynamicArguments), so one compile serves
   * every shape. `argumentTypes` names each argument's gpu.js type.
   * `subKernels`: named functions the kernel calls whose values are extra
   * outputs of the same dispatch (GL: multiple render targets).
   */
  compile(
    source: string, loopMax: number, argumentTypes: Record<string, string>, raw?: RawGl, subKernels: readonly string[] = [],
  ): CompiledKernel {
    const settings: KernelSettingsIn = {
      output: [1],
      argumentTypes: argumentTypes as Record<string, GPUVariableType>,
      dynamicOutput: true,
      dynamicArguments: true,
      pipeline: true,
      immutable: true,
      precision: 'single',
      strictIntegers: true,
      loopMaxIterations: Math.max(1, loopMax),
      tactic: 'precision',
      // GL: packed storage, 4 values per RGBA32F texel (gpu.js runs the kernel body once per channel).
      optimizeFloatMemory: isGlMode(this.mode),
    };
    if (subKernels.length > 0 && !isGlMode(this.mode)) throw new Error(`gpu backend: kernel maps do not run in '${this.mode}' mode`);
    if (raw && !isGlMode(this.mode)) throw new Error(`gpu backend: a GLSL kernel cannot run in '${this.mode}' mode`);
    if (this.queue) return compileWebGpu(this.gpu, source, settings, this.queue);
    const map = Object.fromEntries(subKernels.map((f, i) => [`s${i}`, f]));
    const k = subKernels.length > 0
      ? this.gpu.createKernelMap(map as never, source as never, settings as never)
      : this.gpu.createKernel(source, settings);
    if (isGlMode(this.mode)) patchKernelShader((k as unknown as { kernel?: unknown }).kernel, raw);
    let checked = false;
    let size = 1;
    const run = (n: number, args: readonly KernelArg[]): DeviceBuffer[] => {
      if (n !== size) {
        k.setOutput([n]);
        size = n;
      }
      const res = (k as unknown as (...a: readonly KernelArg[]) => unknown)(...args);
      const out = subKernels.length > 0
        ? [(res as Record<string, DeviceBuffer>).result, ...subKernels.map((_, i) => (res as Record<string, DeviceBuffer>)[`s${i}`])]
        : [res as DeviceBuffer];
      unswitchOutput(k);
      if (!checked) {
        checked = true;
        const inner = (k as unknown as { kernel?: { constructor: KernelClass; fallbackReason?: string } }).kernel;
        const ran = inner ? kernelMode(inner.constructor) : this.mode;
        if (ran !== this.mode) {
          this.degraded++;
          console.warn(`lowrank gpu backend: a '${this.mode}' kernel degraded to '${ran}' (${inner?.fallbackReason ?? 'no reason given'})`);
        }
      }
      return out;
    };
    return { run, destroy: () => k.destroy() };
  }

  /** Kernels gpu.js silently ran in another mode (webasm degrades some to cpu). */
  degraded = 0;

  destroy(): void {
    void this.gpu.destroy();
  }
}

interface KernelClass {
  name: string;
}

/**
 * gpu.js (immutable pipeline) hands a kernel the texture of a previous
 * argument as its next output when an input aliases its output; that texture
 * has the old output size, which breaks a kernel whose output size changes
 * per call. Without the hand-over, the aliased output is simply re-created
 * (beforeMutate), which is always correct.
 */
function unswitchOutput(k: unknown): void {
  const inner = (k as { kernel?: { updateTextureArgumentRefs?: unknown; lowrankUnswitched?: boolean } }).kernel;
  if (!inner || inner.lowrankUnswitched || typeof inner.updateTextureArgumentRefs !== 'function') return;
  inner.updateTextureArgumentRefs = () => {};
  inner.lowrankUnswitched = true;
}

const KERNEL_MODES: Record<string, GpuMode> = {
  HeadlessGLKernel: 'headlessgl',
  WebGL2Kernel: 'webgl2',
  WebGLKernel: 'webgl',
  WebGPUKernel: 'webgpu',
  WebAssemblyKernel: 'webasm',
  CPUKernel: 'cpu',
};

// By identity first: a minifying bundler renames classes, so `name` alone would misreport.
// (A browser build of gpu.js has no HeadlessGLKernel: that entry is then undefined.)
function kernelClasses(): readonly [unknown, GpuMode][] {
  const g = gpuJs();
  return [
    [g.HeadlessGLKernel, 'headlessgl'], [g.WebGL2Kernel, 'webgl2'], [g.WebGLKernel, 'webgl'],
    [(g as { WebGPUKernel?: unknown }).WebGPUKernel, 'webgpu'], [g.WebAssemblyKernel, 'webasm'], [g.CPUKernel, 'cpu'],
  ];
}

function kernelMode(k: KernelClass): string {
  for (const [cls, mode] of kernelClasses()) if (cls !== undefined && k === cls) return mode;
  return KERNEL_MODES[k.name] ?? k.name;
}

function probeMaxTextureSize(gpu: GPU): number {
  const Kernel = gpu.Kernel as unknown as { features?: { maxTextureSize?: number } };
  const n = Kernel.features?.maxTextureSize;
  return typeof n === 'number' && n > 0 ? n : 4096;
}

/** Reads a device buffer back to a fresh Float32Array of `size` values. */
export function readBuffer(b: DeviceBuffer, size: number): Float32Array {
  if (b instanceof WebGpuBuffer) {
    throw new Error('gpu backend (webgpu): values come back only asynchronously (await t.data()); a synchronous read was asked for (download, or the index check of an int32 tensor made on the device)');
  }
  if (!isTexture(b)) return b.slice(0, size);
  const out = b.toArray();
  if (out instanceof Float32Array) return out.length === size ? out : out.slice(0, size);
  return Float32Array.from((out as number[]).slice(0, size));
}

/** Bytes a device buffer takes: RGBA32F texels in GL modes, 4 per value elsewhere. */
export function bufferBytes(b: DeviceBuffer): number {
  if (!isTexture(b)) return b.byteLength;
  const [w, h] = (b as unknown as { size: [number, number] }).size;
  return w * h * 16;
}

export function deleteBuffer(b: DeviceBuffer): void {
  if (b instanceof WebGpuBuffer) b.release();
  else if (isTexture(b)) b.delete();
}
