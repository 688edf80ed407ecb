import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ACTIVATIONS_WASM_BASE64 } from '../../packages/core/src/backends/cpu/activations-wasm.ts';
import { geluGradWasm, geluWasm } from '../../packages/core/src/backends/cpu/wasm-activations.ts';
import { unshareMemory } from '../../packages/core/src/backends/cpu/wasm-module.ts';
import { MODULES, compileWat } from '../../scripts/build-wasm.ts';

const K = Math.sqrt(2 / Math.PI);
const geluRef = (x: number): number => 0.5 * x * (1 + Math.tanh(K * (x + 0.044715 * x ** 3)));
function geluGradRef(x: number): number {
  const t = Math.tanh(K * (x + 0.044715 * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K * (1 + 3 * 0.044715 * x * x);
}

const values = fc.array(
  fc.oneof(fc.float({ min: -8, max: 8, noNaN: true }), fc.float({ min: -1e4, max: 1e4, noNaN: true })),
  { minLength: 1, maxLength: 67 },
).filter((xs) => xs.some((v) => v !== 0));

test('committed activations-wasm.ts equals a fresh compile of activations.wat', async () => {
  assert.deepEqual(new Uint8Array(Buffer.from(ACTIVATIONS_WASM_BASE64, 'base64')), await compileWat(MODULES.activations));
  assert.deepEqual(unshareMemory(new Uint8Array(Buffer.from(ACTIVATIONS_WASM_BASE64, 'base64'))), await compileWat(MODULES.activations, false));
});

test('SIMD gelu matches the float64 tanh formula for any length (tails of 1-3 lanes) and large |x|', () => {
  fc.assert(fc.property(values, (xs) => {
    const x = Float32Array.from(xs);
    const out = new Float32Array(x.length);
    assert.equal(geluWasm(x, out), true);
    x.forEach((v, i) => {
      const e = geluRef(v);
      assert.ok(Math.abs(out[i] - e) <= 1e-6 + 1e-5 * Math.abs(e), `gelu(${v}) = ${out[i]}, expected ${e}`);
    });
  }), { numRuns: 200 });
});

test('SIMD gelu gradient matches dy * gelu\'(x) in float64', () => {
  fc.assert(fc.property(values, fc.float({ min: -3, max: 3, noNaN: true, noDefaultInfinity: true }), (xs, scale) => {
    const x = Float32Array.from(xs);
    const dy = Float32Array.from(xs, (_, i) => scale * Math.cos(i + 1));
    const out = new Float32Array(x.length);
    assert.equal(geluGradWasm(x, dy, out), true);
    x.forEach((v, i) => {
      const e = dy[i] * geluGradRef(v);
      assert.ok(Math.abs(out[i] - e) <= 2e-6 * (1 + Math.abs(dy[i])), `dy*gelu'(${v}) = ${out[i]}, expected ${e}`);
    });
  }), { numRuns: 200 });
});
