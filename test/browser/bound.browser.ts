// The kernel cache's bound in Chromium: 20,000 distinct shapes through the gpu
// backend in a fresh page, in webasm mode (where one WebAssembly.Memory per
// kernel once exhausted the page after ~124 kernels) and in WebGL2 on
// SwiftShader. Run with `npm run test:browser`; fails, never skips, without Chromium.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { GpuMode } from '@lowrank/core';
import { openBundlePage } from '../../examples/web/bundle-page.ts';
import type { BoundCounts } from '../gpu/bound-work.ts';
import type { BoundPage, Probe } from './bound-page.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');
/** The number: distinct shapes with no crash and a bounded kernel count. */
const SHAPES = 20_000;
const CHUNK = 1000;
/** GL kernels are generic in their sizes, so only a small bound makes this workload evict there; webasm keeps its default. */
const BOUNDS: Partial<Record<GpuMode, number>> = { webgl2: 16 };
/** JS heap allowed above its level once the cache is full (what a leak of ~1 KB per shape would pass). */
const HEAP_SLACK = 16 * 2 ** 20;

/** The page's global, as its script sets it. */
type G = { boundPage: BoundPage };
type Sample = Probe & { shapes: number; kernels: number; ms: number };
const results: Record<string, unknown> = {};

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

for (const mode of ['webasm', 'webgl2'] as const) {
  test(`${mode}: ${SHAPES.toLocaleString('en-US')} distinct shapes in a page, kernel count within its bound, memory back to its level`, async () => {
    const p = await openBundlePage({ bound: path.join(HERE, 'bound-page.ts') }, { gc: true });
    try {
      await p.page.waitForFunction(() => 'boundPage' in globalThis);
      const started = await p.page.evaluate(([m, n, b]) => (globalThis as unknown as G).boundPage.start(m, n, b), [mode, SHAPES, BOUNDS[mode]] as const);
      assert.equal(started.mode, mode);
      const bound = started.bound;
      const probe = (): Promise<Probe> => p.page.evaluate(() => (globalThis as unknown as G).boundPage.probe());
      const start = await probe();
      const t0 = performance.now();
      const samples: Sample[] = [];
      let c: BoundCounts | null = null;
      for (let i = 0; i < SHAPES; i += CHUNK) {
        c = await p.page.evaluate(([a, b]) => (globalThis as unknown as G).boundPage.run(a, b), [i, i + CHUNK]);
        samples.push({ ...(await probe()), shapes: c.shapes, kernels: c.kernelsHeld, ms: performance.now() - t0 });
      }
      const seconds = (performance.now() - t0) / 1000;
      assert.ok(c);
      assert.deepEqual(p.errors, []);
      assert.equal(c.shapes, SHAPES);
      assert.ok(c.kernelsMax <= bound, `${c.kernelsMax} kernels held (bound ${bound})`);
      assert.ok(c.evictions > 0, 'no kernel was evicted');
      assert.equal(c.compiles, c.evictions + c.kernelsHeld, 'compiled kernels are either held or evicted');
      assert.ok(c.checked >= SHAPES / 25 && c.worst <= 1e-4, `${c.checked} results checked against JavaScript, worst relative error ${c.worst}`);
      const end = samples[samples.length - 1];
      assert.deepEqual(end.live, start.live, 'tensors, storages, bytes or device buffers left behind');
      // One WebAssembly.Memory per held webasm kernel (each sees one size signature here); none in GL.
      const wasmMax = Math.max(...samples.map((s) => s.wasm.count - start.wasm.count));
      assert.ok(wasmMax <= (mode === 'webasm' ? bound + 1 : 0), `${wasmMax} wasm memories alive after gc (bound ${bound}, ${c.compiles} compiled)`);
      const full = samples[0];
      assert.ok(end.heap <= full.heap + HEAP_SLACK, `JS heap ${mib(full.heap)} after ${full.shapes} shapes, ${mib(end.heap)} after ${end.shapes}`);
      assert.ok(end.wasm.bytes <= Math.max(...samples.map((s) => s.wasm.bytes)), 'wasm bytes');
      if (mode === 'webgl2') {
        const programs = Math.max(...samples.map((s) => s.gl.programs - start.gl.programs));
        assert.ok(programs <= bound, `${programs} WebGL programs alive (bound ${bound})`);
        assert.ok(end.gl.textures - start.gl.textures <= full.gl.textures - start.gl.textures + bound, `textures: ${start.gl.textures} at start, ${full.gl.textures} at ${full.shapes} shapes, ${end.gl.textures} at the end`);
      }
      const row = {
        shapes: c.shapes, bound, kernelsMax: c.kernelsMax, compiles: c.compiles, evictions: c.evictions, checked: c.checked, worst: c.worst, seconds,
        heap: { start: start.heap, full: full.heap, end: end.heap, max: Math.max(...samples.map((s) => s.heap)) },
        wasm: { start: start.wasm, max: wasmMax, maxBytes: Math.max(...samples.map((s) => s.wasm.bytes)), end: end.wasm },
        gl: { start: start.gl, end: end.gl }, samples,
      };
      results[mode] = row;
      console.log(`${mode}: ${c.shapes} shapes in ${seconds.toFixed(1)} s, ${c.compiles} kernels compiled, ${c.evictions} evicted, at most ${c.kernelsMax} held (bound ${bound}); ` +
        `JS heap ${mib(start.heap)} at start, ${mib(full.heap)} after ${full.shapes} shapes, ${mib(end.heap)} at the end (max ${mib(row.heap.max)}); ` +
        `wasm memories alive at most ${wasmMax} (${mib(row.wasm.maxBytes)}), ${end.wasm.count} (${mib(end.wasm.bytes)}) at the end; ` +
        `GL textures ${start.gl.textures} -> ${end.gl.textures}, programs ${start.gl.programs} -> ${end.gl.programs}; ${c.checked} checked, worst ${c.worst.toExponential(1)}`);
    } finally {
      await p.close();
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(path.join(ARTIFACTS, 'bound.json'), `${JSON.stringify(results, null, 2)}\n`);
  });
}
