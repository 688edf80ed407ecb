/**
 * The relaxed-SIMD gemm (fused multiply-adds in the micro-kernel): the
 * committed bytes are a fresh build, the runtime picks it exactly where the
 * engine validates it, and there (a Node started with the V8 flag) it
 * computes the same products as the plain kernel to float32 rounding, with
 * bit-identical results for 1..4 threads. The plain kernel stays tested by
 * every other gemm test (Node 20 has no relaxed SIMD without the flag).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GEMM_WASM_RELAXED_BASE64 } from '../../packages/core/src/backends/cpu/gemm-wasm.ts';
import { unshareMemory } from '../../packages/core/src/backends/cpu/wasm-module.ts';
import { wasmRuntime } from '../../packages/core/src/backends/cpu/wasm-module.ts';
import { compileGemmWat } from '../../scripts/build-wasm.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const relaxedBytes = new Uint8Array(Buffer.from(GEMM_WASM_RELAXED_BASE64, 'base64'));

function node(flags: string[], script: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [...flags, '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000,
  });
}

/** Random products on 1..4 threads in a child Node: max relative error vs float64, and whether all thread counts agree bit for bit. */
const CHILD = `
  import { gemmWasm } from './packages/core/src/backends/cpu/wasm-gemm.ts';
  import { wasmRuntime } from './packages/core/src/backends/cpu/wasm-module.ts';
  import { setNumThreads, disposeThreads } from './packages/core/src/backends/cpu/threads.ts';
  let s = 12345;
  const rand = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; const u = s / 2 ** 32; return (u < 0.5 ? -1 : 1) * (0.05 + 1.9 * (u % 0.5)); };
  let worst = 0, same = true;
  for (const [m, n, k] of [[37, 53, 300], [128, 96, 517], [5, 200, 64], [256, 256, 256]]) {
    const A = Float32Array.from({ length: m * k }, rand), B = Float32Array.from({ length: k * n }, rand);
    let first = null;
    for (const t of [1, 2, 3, 4]) {
      setNumThreads(t);
      const C = new Float32Array(m * n);
      gemmWasm(m, n, k, A, [0], k, 1, B, [0], n, 1, C, t);
      if (first === null) first = C; else same &&= C.every((v, i) => Object.is(v, first[i]));
    }
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let ref = 0, mag = 0;
      for (let p = 0; p < k; p++) { ref += A[i * k + p] * B[p * n + j]; mag += Math.abs(A[i * k + p] * B[p * n + j]); }
      worst = Math.max(worst, Math.abs(first[i * n + j] - ref) / mag);
    }
  }
  disposeThreads();
  console.log(JSON.stringify({ relaxed: wasmRuntime().relaxed, worst, same }));
`;

test('committed relaxed-SIMD gemm bytes equal a fresh compile of gemm.wat (shared and plain memory)', async () => {
  assert.deepEqual(relaxedBytes, await compileGemmWat(true, true));
  assert.deepEqual(unshareMemory(relaxedBytes), await compileGemmWat(false, true));
});

test('the runtime uses the relaxed kernel exactly where the engine validates it', () => {
  assert.equal(wasmRuntime()?.relaxed, WebAssembly.validate(relaxedBytes));
});

test('with relaxed SIMD enabled: the relaxed kernel runs, matches float64 to float32 rounding, same bits on 1..4 threads', () => {
  const r = node(['--experimental-wasm-relaxed-simd'], CHILD);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim()) as { relaxed: boolean; worst: number; same: boolean };
  assert.equal(out.relaxed, true, 'relaxed kernel picked');
  assert.ok(out.worst < 1e-5, `relative error ${out.worst}`);
  assert.equal(out.same, true, 'bit-identical across thread counts');
});

test('LOWRANK_RELAXED_SIMD=0 keeps the plain kernel even where relaxed SIMD exists', () => {
  const r = node(['--experimental-wasm-relaxed-simd'], CHILD, { LOWRANK_RELAXED_SIMD: '0' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim()) as { relaxed: boolean; worst: number; same: boolean };
  assert.equal(out.relaxed, false);
  assert.ok(out.worst < 1e-5 && out.same);
});
