// The webgpu mode's ordering, without a GPU: compileWebGpu over a fake gpu.js
// whose kernels resolve later, as WebGPU's do. (The real mode runs in Chromium:
// test/browser/webgpu.browser.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GPU } from 'gpu.js';
import { GpuBackend } from '@lowrank/core';
import { WebGpuBuffer, WebGpuQueue, compileWebGpu, probeWebGpu, webGpuBlocker } from '../../packages/core/src/backends/gpu/webgpu.ts';

/** A fake buffer: values, and the log line its destruction writes. */
function fakeBuffer(values: Float32Array, onDestroy: () => void) {
  const b = {
    _refs: 1, values, size: values.length * 4, destroy: onDestroy,
    mapAsync: async () => {}, getMappedRange: () => b.values.slice().buffer, unmap() {},
  };
  return b;
}

/** A fake gpu.js: kernel `source` returns 1 + the sum of its inputs, a turn later (as a WebGPU kernel call does); `failOn` rejects. */
function fakeGpu(log: string[], failOn?: string): GPU {
  let made = 0;
  const device = {
    createBuffer: () => fakeBuffer(new Float32Array(0), () => {}),
    createCommandEncoder: () => ({
      copyBufferToBuffer(src: { values: Float32Array }, _so: number, dst: { values: Float32Array }) {
        dst.values = src.values;
      },
      finish: () => null,
    }),
    queue: { submit() {} },
  };
  const handle = (id: string, values: Float32Array) => {
    const buffer = fakeBuffer(values, () => log.push(`destroy ${id}`));
    return { buffer, context: { device, isLost: false }, delete: () => (--buffer._refs === 0 ? buffer.destroy() : 0) };
  };
  const gpu = {
    createKernel(source: string) {
      let n = 1;
      const k = (...args: { buffer: { values: Float32Array } }[]) => {
        const id = `${source}#${++made}`;
        log.push(`run ${id}`);
        if (source === failOn) return Promise.reject(new Error('WGSL says no'));
        const out = Float32Array.from({ length: n }, (_, i) => args.reduce((s, a) => s + a.buffer.values[i], 1));
        return new Promise((r) => setTimeout(() => r(handle(id, out)), 2));
      };
      return Object.assign(k, { setOutput: (o: number[]) => (n = o[0]), destroy: () => log.push(`destroy kernel ${source}`) });
    },
  };
  return gpu as unknown as GPU;
}

test('webgpu dispatches return at once, run in issue order after their inputs, and a free waits for earlier readers', async () => {
  const log: string[] = [];
  const queue = new WebGpuQueue();
  const gpu = fakeGpu(log);
  const one = compileWebGpu(gpu, 'ones', {}, queue);
  const plus = compileWebGpu(gpu, 'plus', {}, queue);
  const [a] = one.run(3, []);
  const [b] = plus.run(3, [a]);
  a.release(); // issued after b's dispatch: must not overtake it
  const [c] = plus.run(3, [b]);
  const read = c.read(3);
  c.release(); // issued after the read
  assert.deepEqual(log, [], 'nothing ran synchronously');
  assert.equal(queue.pending, 3);
  assert.deepEqual(Array.from(await read), [3, 3, 3]);
  await queue.flush();
  assert.deepEqual(log, ['run ones#1', 'run plus#2', 'destroy ones#1', 'run plus#3', 'destroy plus#3']);
  assert.equal(queue.pending, 0);
  assert.equal(queue.liveDeviceBuffers, 1, 'b is still held');
  b.release();
  await queue.flush();
  assert.equal(queue.liveDeviceBuffers, 0);
  assert.ok(b instanceof WebGpuBuffer && b.byteLength === 12);
});

test('an evicted webgpu kernel is destroyed after the runs issued before its eviction', async () => {
  const log: string[] = [];
  const queue = new WebGpuQueue();
  const k = compileWebGpu(fakeGpu(log), 'ones', {}, queue);
  const [a] = k.run(2, []);
  k.destroy();
  assert.deepEqual(Array.from(await a.read(2)), [1, 1]);
  await queue.flush();
  assert.deepEqual(log, ['run ones#1', 'destroy kernel ones']);
});

test('a failed webgpu kernel makes reads of its result reject and later dispatches throw, naming the kernel family', async () => {
  const log: string[] = [];
  const queue = new WebGpuQueue();
  const gpu = fakeGpu(log, 'bad');
  queue.label = 'matmul';
  const [x] = compileWebGpu(gpu, 'bad', {}, queue).run(2, []);
  await assert.rejects(() => x.read(2), /gpu backend \(webgpu\): kernel 'matmul' failed: WGSL says no/);
  assert.throws(() => compileWebGpu(gpu, 'ones', {}, queue).run(2, []), /kernel 'matmul' failed/);
});

test('where navigator.gpu exists but requestAdapter() answers null, mode webgpu fails naming the mode and why', async () => {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  const had = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu: { requestAdapter: async () => null } }, configurable: true });
  try {
    assert.match(webGpuBlocker() ?? '', /has not been asked for yet: `await probeWebGpu\(\)`/);
    assert.throws(() => new GpuBackend({ mode: 'webgpu' }), /mode 'webgpu' was requested but cannot run here \(the adapter has not been asked for yet/);
    const probe = await probeWebGpu();
    assert.equal(probe.available, false);
    assert.match(probe.reason ?? '', /requestAdapter\(\) returned null/);
    assert.throws(() => new GpuBackend({ mode: 'webgpu' }), /mode 'webgpu' was requested but cannot run here \(navigator\.gpu\.requestAdapter\(\) returned null/);
  } finally {
    if (had) Object.defineProperty(globalThis, 'navigator', had);
    else delete g.navigator;
  }
});
