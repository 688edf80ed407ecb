// Each core layer loads on its own, in a fresh process, and any core file may be
// imported before the package entry: no module cycle decides what initialises first.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../fixtures-dir.ts';

const src = (file: string): string => pathToFileURL(path.join(repoRoot, 'packages/core/src', file)).href;

/** Runs an ES module in a fresh node (with tsx) and returns what it printed. */
function runFresh(code: string): string {
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

describe('import order', () => {
  test('tensor.ts alone: makes tensors, reads them back, and has no op sugar until the op layer loads', () => {
    const out = runFresh(`
      import { tensor, full, tidy, memory } from '${src('tensor.ts')}';
      import { registerBackend } from '${src('backend.ts')}';
      import { CpuBackend } from '${src('backends/cpu/index.ts')}';
      registerBackend('cpu', () => new CpuBackend('cpu'));
      const t = tensor([[1.5, -2], [3, 4.25]]);
      const kept = tidy(() => { full([3], 7); return t; });
      console.log(JSON.stringify({ v: t.toArray(), shape: t.shape, kept: kept === t, live: memory().liveTensors, add: typeof t.add }));
    `);
    assert.deepEqual(JSON.parse(out), { v: [[1.5, -2], [3, 4.25]], shape: [2, 2], kept: true, live: 1, add: 'undefined' });
  });

  test('autograd.ts alone: a hand-recorded node backpropagates, un-broadcasts and accumulates without the op layer', () => {
    const out = runFresh(`
      import { tensor, makeTensor } from '${src('tensor.ts')}';
      import { attach } from '${src('autograd.ts')}';
      import { registerBackend, getBackend } from '${src('backend.ts')}';
      import { CpuBackend } from '${src('backends/cpu/index.ts')}';
      registerBackend('cpu', () => new CpuBackend('cpu'));
      const b = getBackend('cpu');
      // y[i][j] = 3 * x[j] with x broadcast over 2 rows: dL/dx sums dy over the rows.
      const x = tensor([1, -2, 0.5], { requiresGrad: true });
      const data = b.binary({
        inputs: { a: x.data_, b: b.fill({ inputs: {}, attrs: { size: 6, value: 3, dtype: 'float32' } }) },
        attrs: { op: 'mul', aShape: x.shape, bShape: [2, 3], outShape: [2, 3] },
      });
      const y = makeTensor(b, data, [2, 3], 'float32');
      attach('times3', y, [x], (dy) => [() => makeTensor(b, b.affine({ inputs: { x: dy.data_ }, attrs: { size: dy.size, scale: 3, shift: 0 } }), dy.shape, 'float32')], []);
      const dy = tensor([[1, 2, 3], [4, 5, 6]]);
      y.backward(dy);
      const first = Array.from(x.grad.dataSync());
      // A second graph adds into the same leaf gradient.
      const y2 = makeTensor(b, b.cast({ inputs: { x: x.data_ }, attrs: { size: 3, to: 'float32' } }), [3], 'float32');
      attach('copy', y2, [x], (d) => [() => d], []);
      y2.backward(tensor([0.25, 0.5, 1]));
      console.log(JSON.stringify({ first, second: Array.from(x.grad.dataSync()), node: y.gradFn.op }));
    `);
    assert.deepEqual(JSON.parse(out), { first: [15, 21, 27], second: [15.25, 21.5, 28], node: 'times3' });
  });

  for (const first of ['tensor.ts', 'autograd.ts', 'ops/binary.ts', 'recompute.ts', 'engine.ts']) {
    test(`${first} imported before '@lowrank/core': the package loads and the method sugar works`, () => {
      const out = runFresh(`
        await import('${src(first)}');
        const { tensor, recompute } = await import('@lowrank/core');
        const x = tensor([1, 2, 3], { requiresGrad: true });
        const y = recompute((h) => h.mul(h).add(1), [x]);
        y.sum().backward();
        console.log(JSON.stringify({ y: y.toArray(), g: x.grad.toArray() }));
      `);
      assert.deepEqual(JSON.parse(out), { y: [2, 5, 10], g: [2, 4, 6] });
    });
  }
});
