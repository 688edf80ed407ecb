import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KernelCache, type KernelKey } from '../../packages/core/src/backends/gpu/cache.ts';
import type { CompiledKernel } from '../../packages/core/src/backends/gpu/gpujs.ts';

/** A stand-in kernel that records its compile bucket and whether it was destroyed. */
function fake(bucket: number): CompiledKernel & { bucket: number; destroyed: boolean } {
  const k = { bucket, destroyed: false, run: () => [], destroy: () => { k.destroyed = true; } };
  return k;
}

// A multi-KB source, rebuilt per lookup as the kernel files do (equal text, a new string each time).
const body = Array.from({ length: 200 }, (_, i) => `let v${i} = x[this.thread.x] * ${i};`).join('\n');
const src = (n: number): string => `function (x) {\n// kernel ${n}\n${body}\nreturn 0;\n}`;
const key = (n: number, loop = 10, shape = 'Array', helpers = ''): KernelKey => ({ src: src(n), helpers, shape, loop });

test('the kernel cache: equal keys hit, any differing part misses, a longer loop bucket serves a shorter loop up to 64x', () => {
  const c = new KernelCache(100);
  const a = c.get(key(1), fake);
  assert.equal(c.get(key(1), fake), a, 'an equal source rebuilt as a new string');
  for (const k of [key(2), key(1, 10, 'Float'), key(1, 10, 'Array', 'vec4 lrGet() {}')]) assert.notEqual(c.get(k, fake), a);
  const long = c.get(key(3, 256 * 64), fake);
  assert.equal((long.kernel as ReturnType<typeof fake>).bucket, 256 * 64);
  assert.equal(c.get(key(3, 10), fake), long, 'a loop 64x shorter reuses the longer kernel');
  assert.equal(c.compiles, 5);
  const far = c.get(key(4, 256 * 128), fake);
  assert.notEqual(c.get(key(4, 10), fake), far, 'a loop more than 64x shorter compiles its own');
});

test('the kernel cache evicts the least recently used kernel with no live output, destroys it and forgets its source', () => {
  const c = new KernelCache(2);
  const a = c.get(key(1), fake);
  const b = c.get(key(2), fake);
  c.get(key(1), fake); // a is now the most recent
  c.get(key(3), fake);
  assert.equal(c.size, 2);
  assert.equal((b.kernel as ReturnType<typeof fake>).destroyed, true, 'the least recently used was evicted');
  assert.equal((a.kernel as ReturnType<typeof fake>).destroyed, false);
  assert.equal(c.sources, 2, 'the evicted source is forgotten');
  a.live = 1;
  const d = c.get(key(4), fake);
  assert.equal((a.kernel as ReturnType<typeof fake>).destroyed, false, 'a kernel with a live output is kept');
  assert.equal(c.size, 2);
  assert.equal(c.evictions, 2);
  assert.notEqual(c.get(key(2), fake), b, 'an evicted kernel compiles again');
  assert.equal((d.kernel as ReturnType<typeof fake>).destroyed, true);
});
