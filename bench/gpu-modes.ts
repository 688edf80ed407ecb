/**
 * Backend names for benchmarks: `gpu` expands to one backend per gpu.js mode
 * that starts here (headlessgl under an X display, webasm), registered as
 * `gpu-<mode>`; `gpu:<mode>` picks one mode.
 */
import { GpuBackend, listBackends, probeGpuModes, registerBackend, type GpuMode } from '@lowrank/core';

const BENCH_MODES: readonly GpuMode[] = ['headlessgl', 'webgl2', 'webasm'];

function registerMode(mode: GpuMode): string {
  const name = `gpu-${mode}`;
  if (!listBackends().includes(name)) registerBackend(name, new GpuBackend({ mode, name }));
  return name;
}

export function expandGpuBackends(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const name of names) {
    if (name === 'gpu') {
      const probe = probeGpuModes();
      const modes = BENCH_MODES.filter((m) => probe[m]);
      if (!probe.headlessgl) console.log('headlessgl unavailable here (run under xvfb-run for it): gpu rows are webasm only');
      out.push(...modes.map(registerMode));
    } else if (name.startsWith('gpu:')) {
      out.push(registerMode(name.slice(4) as GpuMode));
    } else {
      out.push(name);
    }
  }
  return out;
}
