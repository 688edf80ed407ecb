/**
 * The shared-memory arena the cpu backend's tensors live in: blocks are
 * reused best-fit, merged with their neighbours when released (the top
 * comes back down), handed out zeroed, and told apart from ordinary arrays.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { arenaArray, arenaFree, arenaStats, inArena } from '../../packages/core/src/backends/cpu/arena.ts';
import { CpuBackend } from '../../packages/core/src/backends/cpu/index.ts';

test('a released block is reused, comes back zeroed, and neighbours merge so the top falls back', () => {
  const base = arenaStats().topBytes;
  const a = arenaArray(Float32Array, 5000)!;
  const b = arenaArray(Float32Array, 3000)!;
  const c = arenaArray(Float32Array, 7000)!;
  assert.ok(inArena(a) && inArena(b) && inArena(c));
  b.fill(1.5);
  assert.equal(arenaFree(b), true);
  assert.equal(arenaFree(b), false, 'a second free is a no-op');
  const d = arenaArray(Float32Array, 3000)!;
  assert.equal(d.byteOffset, b.byteOffset, 'best fit: the freed block');
  assert.ok(d.every((v) => v === 0), 'zeroed');
  for (const x of [a, d, c]) arenaFree(x);
  assert.equal(arenaStats().topBytes, base, 'merged blocks give the top back');
});

test('random alloc/free sequences: live blocks never overlap, and freeing all restores the top', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.boolean()), { minLength: 1, maxLength: 40 }), (ops) => {
    const base = arenaStats().topBytes;
    const live: Float32Array[] = [];
    for (const [n, freeOne] of ops) {
      if (freeOne && live.length > 0) arenaFree(live.splice(n % live.length, 1)[0]);
      else live.push(arenaArray(Float32Array, n)!);
    }
    const spans = live.map((x) => [x.byteOffset, x.byteOffset + x.byteLength]).sort((p, q) => p[0] - q[0]);
    for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1], 'no overlap');
    for (const x of live) arenaFree(x);
    assert.equal(arenaStats().topBytes, base);
  }), { numRuns: 30 });
});

test('the backend puts large float32, int32 and 16-bit storage in the arena, small ones and float64 outside it', () => {
  const be = new CpuBackend('arena-test');
  const big = be.upload(new Array(1000).fill(0.5), 'float32');
  const ids = be.upload(new Array(1000).fill(3), 'int32');
  const half = be.upload(new Array(1000).fill(0.5), 'bfloat16');
  const small = be.upload([1, 2, 3], 'float32');
  assert.ok(inArena(big as Float32Array) && inArena(ids as Int32Array) && inArena(half as Uint16Array));
  assert.equal(inArena(small as Float32Array), false);
  assert.equal(inArena(new CpuBackend('f64', 'float64').upload(new Array(1000).fill(1), 'float32') as Float64Array), false);
  const before = arenaStats().liveBytes;
  be.free(big);
  assert.ok(arenaStats().liveBytes < before, 'free gives the block back');
});
