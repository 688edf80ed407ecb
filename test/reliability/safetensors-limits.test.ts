// Issue 15 defect 4: tiny hostile safetensors headers cost milliseconds, not seconds and hundreds of MB.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSafetensors, encodeSafetensors } from '@lowrank/core';

const file = (json: string): Uint8Array => {
  const j = new TextEncoder().encode(json);
  const b = new Uint8Array(8 + j.length);
  new DataView(b.buffer).setBigUint64(0, BigInt(j.length), true);
  b.set(j, 8);
  return b;
};

test('a header nested 1M deep, a deep __metadata__ and 200k declared tensors fail fast with clear errors', () => {
  const cases: [Uint8Array, RegExp][] = [
    [file(`{"a":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}`), /nests deeper than 4 levels/],
    [file(`{"__metadata__":{"a":${'{"b":'.repeat(1000)}1${'}'.repeat(1000)}}}`), /nests deeper than 4 levels/],
    [file(`{${Array.from({ length: 200_000 }, (_, i) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`).join(',')}}`), /more than the limit of 100000 tensors/],
  ];
  for (const [bytes, msg] of cases) {
    const t0 = performance.now();
    assert.throws(() => decodeSafetensors(bytes), msg);
    // Before: 29 s and 596 MB for the 5M-deep header, 17.5 s for 500k tensors. Now one linear scan.
    assert.ok(performance.now() - t0 < 3000, `${msg}: ${(performance.now() - t0).toFixed(0)} ms`);
  }
  const ok = encodeSafetensors({ w: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } }, { format: 'pt' });
  assert.equal(decodeSafetensors(ok).tensors.get('w')!.data[1], 2);
  assert.throws(() => decodeSafetensors(ok, { maxTensors: 0 }), /more than the limit of 0 tensors/);
});
