import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CpuBackend } from '../../packages/core/src/backends/cpu/index.ts';
import { GEMM_WASM_BASE64 } from '../../packages/core/src/backends/cpu/gemm-wasm.ts';
import { gemmWasm, wasmGemmAvailable } from '../../packages/core/src/backends/cpu/wasm-gemm.ts';
import { unshareMemory } from '../../packages/core/src/backends/cpu/wasm-module.ts';
import { compileGemmWat } from '../../scripts/build-wasm.ts';

/** Values in +-[0.05, 1): never zero, so no all-zero operand. */
function data(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    out[i] = (u < 0.5 ? -1 : 1) * (0.05 + 0.95 * (2 * (u % 0.5)));
  }
  return out;
}

interface Operand { values: Float32Array; off: number; sRow: number; sCol: number }

/**
 * The matrix view (rows x cols) of a stored [rows, cols] operand, or of a stored
 * [cols, rows] one when transposed.
 */
function view(values: Float32Array, off: number, rows: number, cols: number, trans: boolean): Operand {
  return trans ? { values, off, sRow: 1, sCol: rows } : { values, off, sRow: cols, sCol: 1 };
}

/**
 * Checks C = A * B against a float64 reference: |c - e| <= 1e-4 * sum_p |a_ip b_pj|,
 * on the entries with (i + 3j) % every == 0 (every 1: all of them).
 */
function checkGemm(
  m: number, n: number, k: number, A: Operand, B: Operand, C: Float32Array, cOff: number, every = 1,
): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      if ((i + 3 * j) % every !== 0) continue;
      let e = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        const x = A.values[A.off + i * A.sRow + p * A.sCol] * B.values[B.off + p * B.sRow + j * B.sCol];
        e += x;
        mag += Math.abs(x);
      }
      const got = C[cOff + i * n + j];
      if (!(Math.abs(got - e) <= 1e-4 * mag)) {
        assert.fail(`C[${i},${j}] = ${got}, expected ${e} (m=${m} n=${n} k=${k})`);
      }
    }
  }
}

const dim = fc.integer({ min: 1, max: 70 });

describe('wasm gemm', () => {
  test('committed gemm-wasm.ts equals a fresh compile of gemm.wat', async () => {
    const fresh = await compileGemmWat();
    assert.deepEqual(new Uint8Array(Buffer.from(GEMM_WASM_BASE64, 'base64')), fresh);
  });

  test('unshareMemory turns the committed module into a fresh compile with an unshared memory', async () => {
    assert.deepEqual(unshareMemory(new Uint8Array(Buffer.from(GEMM_WASM_BASE64, 'base64'))), await compileGemmWat(false));
  });

  test('WebAssembly SIMD is available in Node 20', () => {
    assert.equal(wasmGemmAvailable(), true);
  });

  test('random shapes, all transpose flags, per-batch offsets', () => {
    fc.assert(
      fc.property(dim, dim, dim, fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 3 }), fc.boolean(),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (m, n, k, transA, transB, batches, shareB, seed) => {
          const aVals = data(batches * m * k, seed);
          const bVals = data((shareB ? 1 : batches) * k * n, seed ^ 0x5bd1e995);
          const aOffs = Array.from({ length: batches }, (_, i) => i * m * k);
          const bOffs = Array.from({ length: batches }, (_, i) => (shareB ? 0 : i * k * n));
          const a0 = view(aVals, 0, m, k, transA);
          const b0 = view(bVals, 0, k, n, transB);
          const C = new Float32Array(batches * m * n);
          assert.equal(gemmWasm(m, n, k, aVals, aOffs, a0.sRow, a0.sCol, bVals, bOffs, b0.sRow, b0.sCol, C), true);
          for (let bi = 0; bi < batches; bi++) {
            checkGemm(m, n, k, { ...a0, off: aOffs[bi] }, { ...b0, off: bOffs[bi] }, C, bi * m * n);
          }
        }),
      { numRuns: 200 },
    );
  });

  test('big shapes across the cache blocks (MC 128, KC 512, NC 1024), all transpose flags', () => {
    const shapes: [number, number, number][] = [[1024, 384, 128], [130, 1030, 600], [257, 70, 1025]];
    for (const [m, n, k] of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const aVals = data(m * k, m + 7 * k);
          const bVals = data(k * n, n + 13 * k);
          const A = view(aVals, 0, m, k, transA);
          const B = view(bVals, 0, k, n, transB);
          const C = new Float32Array(m * n);
          assert.equal(gemmWasm(m, n, k, aVals, [0], A.sRow, A.sCol, bVals, [0], B.sRow, B.sCol, C), true);
          checkGemm(m, n, k, A, B, C, 0, 7);
        }
      }
    }
  });
});

describe('CpuBackend.matmul (wasm for float32, JS gemm for float64)', () => {
  const batchShapes: [number[], number[]][] = [[[], []], [[3], []], [[], [2]], [[2, 1], [3]], [[1, 4], [2, 1]]];

  for (const [precision, tol] of [['float32', 1e-4], ['float64', 1e-12]] as const) {
    test(`${precision}: random shapes, transpose flags and batch broadcasting`, () => {
      const backend = new CpuBackend(`test-${precision}`, precision);
      fc.assert(
        fc.property(dim, dim, dim, fc.boolean(), fc.boolean(), fc.constantFrom(...batchShapes),
          fc.integer({ min: 1, max: 2 ** 31 - 1 }),
          (m, n, k, transA, transB, [aBatch, bBatch], seed) => {
            const rank = Math.max(aBatch.length, bBatch.length);
            const pad = (s: number[]): number[] => [...new Array<number>(rank - s.length).fill(1), ...s];
            const batch = pad(aBatch).map((d, i) => Math.max(d, pad(bBatch)[i]));
            const aShape = [...aBatch, ...(transA ? [k, m] : [m, k])];
            const bShape = [...bBatch, ...(transB ? [n, k] : [k, n])];
            const aCount = aBatch.reduce((x, y) => x * y, 1);
            const bCount = bBatch.reduce((x, y) => x * y, 1);
            const a32 = data(aCount * m * k, seed);
            const b32 = data(bCount * k * n, seed + 1);
            const a = precision === 'float32' ? a32 : Float64Array.from(a32);
            const b = precision === 'float32' ? b32 : Float64Array.from(b32);
            const out = backend.matmul({ inputs: { a, b }, attrs: { aShape, bShape, transA, transB, outShape: [...batch, m, n] } });
            assert.equal(out.constructor, precision === 'float32' ? Float32Array : Float64Array);
            const total = batch.reduce((x, y) => x * y, 1);
            const paddedA = pad(aBatch);
            const paddedB = pad(bBatch);
            for (let bi = 0; bi < total; bi++) {
              // flat batch index -> broadcast source matrices
              let rest = bi;
              let ai = 0;
              let bj = 0;
              let aStride = 1;
              let bStride = 1;
              for (let ax = rank - 1; ax >= 0; ax--) {
                const idx = rest % batch[ax];
                rest = Math.floor(rest / batch[ax]);
                if (paddedA[ax] > 1) ai += idx * aStride;
                if (paddedB[ax] > 1) bj += idx * bStride;
                aStride *= paddedA[ax];
                bStride *= paddedB[ax];
              }
              for (let i = 0; i < m; i++) {
                for (let j = 0; j < n; j++) {
                  let e = 0;
                  let mag = 0;
                  for (let p = 0; p < k; p++) {
                    const x = a32[ai * m * k + (transA ? p * m + i : i * k + p)]
                      * b32[bj * k * n + (transB ? j * k + p : p * n + j)];
                    e += x;
                    mag += Math.abs(x);
                  }
                  const got = out[bi * m * n + i * n + j];
                  if (!(Math.abs(got - e) <= tol * mag)) assert.fail(`out[${bi},${i},${j}] = ${got}, expected ${e}`);
                }
              }
            }
          }),
        { numRuns: 100 },
      );
    });
  }
});
