import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GpuBackend, getBackend, probeGpuModes, probeWebGpu, tensor } from '@lowrank/core';
import { announceModes, backendFor, headlessAvailable, modesUnderTest } from './modes.ts';

announceModes();

test('headlessgl available (or reported unavailable, with the fallback named)', () => {
  const probe = probeGpuModes();
  assert.equal(probe.headlessgl, headlessAvailable);
  if (process.env.DISPLAY && process.env.LOWRANK_REQUIRE_HEADLESSGL === '1') assert.ok(headlessAvailable, 'headless-gl did not start');
  if (!headlessAvailable) {
    console.log(`headlessgl unavailable here (DISPLAY=${process.env.DISPLAY ?? 'unset'}): ran ${modesUnderTest.join(', ')} only`);
    assert.deepEqual(modesUnderTest, ['webasm']);
  } else {
    assert.deepEqual(modesUnderTest, ['headlessgl', 'webasm']);
  }
  assert.ok(probe.webasm, 'webasm must be available in Node');
});

for (const mode of modesUnderTest) {
  test(`explicit mode '${mode}' runs that mode`, () => {
    const b = backendFor(mode);
    assert.equal(b.mode, mode);
    const x = tensor([1, 2, 3], { backend: b.name });
    assert.deepEqual(Array.from(x.mul(2).dataSync()), [2, 4, 6]);
  });
}

test('the registered gpu backend picks headlessgl when it starts, else webasm', () => {
  const b = getBackend('gpu');
  const expected = process.env.LOWRANK_GPU_MODE ?? (headlessAvailable ? 'headlessgl' : 'webasm');
  assert.equal(b.mode, expected);
});

test('an unknown or unavailable mode fails with a clear message', () => {
  assert.throws(() => new GpuBackend({ mode: 'nope' as 'cpu' }), /unknown gpu.js mode 'nope'/);
  if (!headlessAvailable) {
    assert.throws(() => new GpuBackend({ mode: 'headlessgl' }), /mode 'headlessgl' was requested but cannot run here.*xvfb-run/);
  }
  assert.throws(() => new GpuBackend({ mode: 'webgl2' }), /mode 'webgl2' was requested but cannot run here/);
});

test('webgpu in Node: never picked by auto, and asked for by name it fails naming the mode and navigator.gpu', async () => {
  assert.equal(probeGpuModes().webgpu, false);
  const probe = await probeWebGpu();
  assert.equal(probe.available, false);
  assert.match(probe.reason ?? '', /navigator\.gpu is missing/);
  assert.throws(() => new GpuBackend({ mode: 'webgpu' }), /gpu\.js mode 'webgpu' was requested but cannot run here \(navigator\.gpu is missing/);
});

test('LOWRANK_GPU_MODE selects the mode', () => {
  const old = process.env.LOWRANK_GPU_MODE;
  process.env.LOWRANK_GPU_MODE = 'cpu';
  try {
    assert.equal(new GpuBackend().mode, 'cpu');
  } finally {
    if (old === undefined) delete process.env.LOWRANK_GPU_MODE;
    else process.env.LOWRANK_GPU_MODE = old;
  }
});
