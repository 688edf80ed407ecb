import { GpuBackend, probeGpuModes, registerBackend, type GpuMode } from '@lowrank/core';

/** headless-gl needs the `gl` package and an X display (xvfb-run on a server). */
export const headlessAvailable = probeGpuModes().headlessgl;

/** The gpu.js modes the gpu tests run: webasm always, headlessgl where it starts. */
export const modesUnderTest: GpuMode[] = headlessAvailable ? ['headlessgl', 'webasm'] : ['webasm'];

const made = new Map<GpuMode, GpuBackend>();

/** One backend per mode, registered as `gpu-<mode>` so tensors can live on it. */
export function backendFor(mode: GpuMode): GpuBackend {
  let b = made.get(mode);
  if (!b) {
    b = new GpuBackend({ mode, name: `gpu-${mode}` });
    registerBackend(b.name, b);
    made.set(mode, b);
  }
  return b;
}

let announced = false;
export function announceModes(): void {
  if (announced) return;
  announced = true;
  if (!headlessAvailable) {
    console.log(`headlessgl unavailable here (DISPLAY=${process.env.DISPLAY ?? 'unset'}): ran webasm only`);
  }
}
