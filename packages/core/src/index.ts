import { registerBackend } from './backend.ts';
import { CpuBackend } from './backends/cpu/index.ts';
import { MetaBackend } from './backends/meta.ts';
import { GpuBackend } from './backends/gpu/index.ts';
import { loadGpuJs } from './backends/gpu/load.ts';

registerBackend('cpu', () => new CpuBackend('cpu'));
registerBackend('meta', () => new MetaBackend());
registerBackend('gpu', () => new GpuBackend(), { load: loadGpuJs });

export * from './backend.ts';
export { Storage, profileKernels, runKernel, type KernelRecord, type MemoryInfo } from './engine.ts';
export * from './shape.ts';
export { Rng, globalRng, manualSeed } from './rng.ts';
export {
  Tensor, tensor, scalar, full, zeros, ones, tidy, keep, dispose, memory, resetPeak, makeTensor,
  type NestedArray, type TensorOptions,
} from './tensor.ts';
export { attach, recordNode, saveForBackward, forwardScope, noGrad, withGrad, isGradEnabled, backward, type GradFn, type GradThunk } from './autograd.ts';
export { recompute, checkpoint } from './recompute.ts';
export * from './ops/index.ts';
export { gradcheck, type GradcheckOptions, type GradcheckReport } from './gradcheck.ts';
export { CpuBackend } from './backends/cpu/index.ts';
export { BF16Array, F16Array } from './backends/cpu/half.ts';
export {
  setNumThreads, getNumThreads, threadsNote, setWorkerFactory, disposeThreads,
  type WorkerFactory, type WorkerHandle, type WorkerInit,
} from './backends/cpu/threads.ts';
export { MetaBackend } from './backends/meta.ts';
export { GpuBackend, probeGpuModes, probeWebGpu, type GpuBackendOptions, type GpuMode, type WebGpuProbe } from './backends/gpu/index.ts';
export { loadGpuJs } from './backends/gpu/load.ts';
export * from './serialization/index.ts';
export { getFileHost, setFileHost, type FileHost } from './files.ts';
export { nodeRequire } from './platform.ts';
