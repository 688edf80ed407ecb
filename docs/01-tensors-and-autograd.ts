// Tutorial 1: tensors and autograd. Run: node --import tsx docs/01-tensors-and-autograd.ts
// The page docs/01-tensors-and-autograd.md quotes the #region blocks below (npm run docs:sync).
import {
  Tensor, attach, gradcheck, manualSeed, matmul, noGrad, randn, tensor, zeros,
} from '@lowrank/core';
import { runIfMain, type TutorialOptions } from './cli.ts';

/** What the tutorial shows, checked by test/docs/tutorials.test.ts. */
export interface Claims {
  broadcastShape: number[];
  broadcastValues: number[][];
  matmulShape: number[];
  /** d(sum(x * x))/dx from backward() minus 2x, largest absolute difference. */
  gradError: number;
  /** Two backward passes add into .grad. */
  accumulated: number[];
  noGradRequiresGrad: boolean;
  noGradHasGraph: boolean;
  detachedRequiresGrad: boolean;
  gradcheckOk: boolean;
  gradcheckMaxAbsError: number;
  /** A deliberately wrong backward is caught. */
  gradcheckCatchesBug: boolean;
}

export async function main(opts: TutorialOptions): Promise<Claims> {
  const log = opts.log ?? console.log;
  manualSeed(0);

  // #region create
  const a = tensor([[1, 2, 3], [4, 5, 6]]); // float32 [2, 3]
  const ids = tensor([0, 2, 1], { dtype: 'int32' }); // int32 [3]
  const z = zeros([2, 3]);
  const w = randn([3, 4], { std: 0.1 }); // seeded: manualSeed(0) makes it reproducible
  log(`${a}`);
  log(`${ids.describe()} ${z.describe()} ${w.describe()} on '${w.backend.name}'`);
  // #endregion

  // #region broadcast
  const row = tensor([10, 20, 30]); // [3]
  const col = tensor([[1], [2]]); // [2, 1]
  const sum = a.add(row); // [2, 3] + [3]    -> [2, 3]
  const outer = col.mul(row); // [2, 1] * [3] -> [2, 3]
  log(`a + row = ${JSON.stringify(sum.toArray())}`);
  log(`col * row = ${JSON.stringify(outer.toArray())}`);
  // #endregion

  // #region matmul
  const y = a.matmul(w); // [2, 3] @ [3, 4] -> [2, 4]
  const yT = matmul(w, a, { transposeA: true, transposeB: true }); // w^T @ a^T -> [4, 2], no copies made
  const batched = randn([5, 2, 3]).matmul(w); // batch dims broadcast: [5, 2, 3] @ [3, 4] -> [5, 2, 4]
  log(`y ${y.describe()}, yT ${yT.describe()}, batched ${batched.describe()}`);
  // #endregion

  // #region backward
  const x = tensor([1, -2, 3], { requiresGrad: true });
  const loss = x.mul(x).sum(); // L = sum(x^2), so dL/dx = 2x
  loss.backward();
  log(`L = ${loss.item()}, dL/dx = ${JSON.stringify(x.grad!.toArray())}`);
  // #endregion
  const grad1 = Array.from(x.grad!.dataSync());
  const gradError = Math.max(...grad1.map((g, i) => Math.abs(g - 2 * [1, -2, 3][i])));

  // #region accumulate
  x.mul(3).sum().backward(); // gradients add up, as in PyTorch: 2x + 3
  log(`after a second backward: ${JSON.stringify(x.grad!.toArray())}`);
  // #endregion
  const accumulated = Array.from(x.grad!.dataSync());
  x.grad = null; // what optimizer.zeroGrad() does for every parameter

  // #region nograd
  const frozen = tensor([1, 2, 3]); // requiresGrad false: a constant
  const inference = noGrad(() => x.mul(2).add(frozen)); // no graph is recorded
  const cut = x.mul(2).detach(); // same values, cut from the graph
  log(`noGrad: requiresGrad=${inference.requiresGrad}, gradFn=${inference.gradFn?.op ?? null}`);
  log(`detach: requiresGrad=${cut.requiresGrad}`);
  // #endregion

  // #region gradcheck
  const p = randn([4, 3], { requiresGrad: true });
  const q = randn([3, 2], { requiresGrad: true });
  const f = (p: Tensor, q: Tensor): Tensor => p.matmul(q).tanh().mul(p.sum(1, true)).mean();
  const report = gradcheck(f, [p, q]);
  log(`gradcheck: ok=${report.ok}, max |analytic - numeric| = ${report.maxAbsError.toExponential(2)}`);
  // #endregion

  // #region gradcheck-bug
  // A hand-written op with a wrong backward (it forgets the factor 2 of x^2):
  const square = (t: Tensor): Tensor =>
    attach('badSquare', noGrad(() => t.mul(t)), [t], (dy) => [() => dy.mul(t)]);
  const bad = gradcheck((t) => square(t).sum(), [randn([3], { requiresGrad: true })], { raise: false });
  log(`wrong backward: ok=${bad.ok} (${bad.failure})`);
  // #endregion

  return {
    broadcastShape: [...sum.shape],
    broadcastValues: sum.toArray() as number[][],
    matmulShape: [...y.shape],
    gradError,
    accumulated,
    noGradRequiresGrad: inference.requiresGrad,
    noGradHasGraph: inference.gradFn !== null,
    detachedRequiresGrad: cut.requiresGrad,
    gradcheckOk: report.ok,
    gradcheckMaxAbsError: report.maxAbsError,
    gradcheckCatchesBug: !bad.ok,
  };
}

await runIfMain(import.meta.url, main);
