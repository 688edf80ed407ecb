import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GpuBackend, registerBackend } from '@lowrank/core';
import { BoundWork, collect, trackWasmMemories } from './bound-work.ts';
import { announceModes, modesUnderTest } from './modes.ts';

announceModes();

// The Chromium test (test/browser/bound.browser.ts) runs 20,000 shapes; Node runs
// the same workload shorter, still many times past the bound.
const SHAPES = 1000;
/** GL kernels are generic in their sizes, so only a small bound makes this workload evict there. */
const GL_BOUND = 16;
/** Shapes per op phase: four phases here. */
const PHASE = 250;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const wasm = trackWasmMemories();

for (const mode of modesUnderTest) {
  test(`${mode}: ${SHAPES} distinct shapes keep the kernel count within its bound, evicted kernels release their memory`, async () => {
    const bound = mode === 'webasm' ? undefined : GL_BOUND;
    const name = `gpu-${mode}-bound`;
    const be = new GpuBackend({ mode, name, maxKernels: bound });
    registerBackend(name, be);
    const limit = be.kernelBound;
    const work = new BoundWork(name, be, SHAPES, PHASE);
    const start = work.live();
    await collect(gc);
    const wasmStart = wasm.live().count;
    let wasmMax = 0;
    for (let i = 0; i < SHAPES; i += 250) {
      work.run(i, i + 250);
      await collect(gc);
      wasmMax = Math.max(wasmMax, wasm.live().count - wasmStart);
    }
    const c = work.run(SHAPES, SHAPES);
    assert.ok(c.kernelsMax <= limit, `${c.kernelsMax} kernels held (bound ${limit})`);
    assert.ok(c.evictions > 0, 'no kernel was evicted');
    assert.equal(c.compiles, c.evictions + c.kernelsHeld, 'compiled kernels are either held or evicted');
    assert.ok(c.checked >= SHAPES / 25 && c.worst <= 1e-4, `${c.checked} results checked, worst relative error ${c.worst}`);
    assert.deepEqual(work.live(), start, 'tensors, storages, bytes or device buffers left behind');
    // webasm: one WebAssembly.Memory per held kernel (each kernel here sees one size signature).
    if (mode === 'webasm') assert.ok(wasmMax <= limit + 1, `${wasmMax} wasm memories alive after gc, over ${c.compiles} compiled (bound ${limit})`);
    console.log(`${mode}: ${c.shapes} shapes, ${c.compiles} kernels compiled, ${c.evictions} evicted, at most ${c.kernelsMax} held (bound ${limit}); ` +
      `wasm memories alive at most ${wasmMax} of ${wasm.made()} made; ${c.checked} checked, worst ${c.worst.toExponential(1)}`);
  });
}
