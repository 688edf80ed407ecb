import type { KernelArgs, KernelName } from '../../backend.ts';
import type { CpuBackend } from '../cpu/index.ts';
import type { CodeGen } from './codegen.ts';
import type { DeviceBuffer, GpuMode } from './gpujs.ts';
import type { KernelSpec } from './sources.ts';

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
export interface Lane {
  stride: number;
  index: number;
  shared: { refs: number };
}

/** Largest int32 storage that keeps a host shadow for index validation. */
export const SHADOW_LIMIT = 1 << 22;

export type Args<K extends KernelName> = KernelArgs<GpuData, K>;
type KernelInput = GpuData | Float32Array;

/** What the kernel family files take from GpuBackend: dispatch, storage wrapping and the host shadows. */
export interface GpuContext {
  readonly mode: GpuMode;
  /** A cpu backend computing the host copies of small int32 storages. */
  readonly host: CpuBackend;
  gen(): CodeGen;
  run(spec: KernelSpec, args: readonly KernelInput[], host?: Int32Array | null): GpuData;
  exec(spec: KernelSpec, args: readonly KernelInput[]): { out: DeviceBuffer; extra: DeviceBuffer[]; owner?: { live: number } } | null;
  lanes(spec: KernelSpec, args: readonly KernelInput[], k: number): GpuData[];
  wrap(buf: DeviceBuffer | null, size: number, host?: Int32Array | null, owner?: { live: number }): GpuData;
  zeros(size: number): GpuData;
  free(d: GpuData): void;
  tmpFree(d: GpuData | null): void;
  hostInts(d: GpuData, size: number): Int32Array;
  packedPair(a: GpuData, b: GpuData): GpuData | null;
  laneArg(d: GpuData): { arg: GpuData; stride: number; index: number };
}
