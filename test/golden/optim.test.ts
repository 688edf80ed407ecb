import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tensor, type Tensor } from '@lowrank/core';
import { Adam, AdamW, SGD, type Optimizer, type BaseHyper } from '@lowrank/nn';
import { fixturesDir } from '../fixtures-dir.ts';


interface FixtureTensor { shape: number[]; data: number[] }
interface OptimCase {
  name: string;
  hyper: Record<string, number | boolean | number[]>;
  params: FixtureTensor[];
  grads: FixtureTensor[][];
  steps: { params: FixtureTensor[]; state: Record<string, number | FixtureTensor>[] }[];
}

const ATOL = 1e-5;
const RTOL = 1e-4;

function close(what: string, actual: ArrayLike<number>, expected: FixtureTensor): number {
  assert.equal(actual.length, expected.data.length, `${what}: length`);
  let worst = 0;
  expected.data.forEach((e, i) => {
    const d = Math.abs(actual[i] - e);
    worst = Math.max(worst, d);
    assert.ok(d <= ATOL + RTOL * Math.abs(e), `${what}[${i}]: ${actual[i]} vs ${e}`);
  });
  return worst;
}

function make(file: string, params: Tensor[], h: OptimCase['hyper']): Optimizer<BaseHyper> {
  if (file === 'sgd_momentum') {
    return new SGD(params, {
      lr: h.lr as number, momentum: h.momentum as number, dampening: h.dampening as number,
      weightDecay: h.weightDecay as number, nesterov: h.nesterov as boolean,
    });
  }
  const opts = {
    lr: h.lr as number, betas: h.betas as [number, number], eps: h.eps as number,
    weightDecay: h.weightDecay as number, amsgrad: h.amsgrad as boolean,
  };
  return file === 'adam' ? new Adam(params, opts) : new AdamW(params, opts);
}

for (const file of ['adamw', 'adam', 'sgd_momentum']) {
  const fx = JSON.parse(readFileSync(path.join(fixturesDir, 'optim', `${file}.json`), 'utf8')) as { cases: OptimCase[] };
  describe(`golden optim ${file}`, () => {
    for (const c of fx.cases) {
      test(`${c.name}: params and state after each of ${c.steps.length} steps`, () => {
        const params = c.params.map((p) => tensor(p.data, { shape: p.shape, requiresGrad: true }));
        const opt = make(file, params, c.hyper);
        let worst = 0;
        c.steps.forEach((expected, step) => {
          params.forEach((p, i) => {
            p.grad?.dispose();
            const g = c.grads[step][i];
            p.grad = tensor(g.data, { shape: g.shape });
          });
          opt.step();
          params.forEach((p, i) => {
            worst = Math.max(worst, close(`step ${step + 1} p${i}`, p.dataSync(), expected.params[i]));
            const st = opt.getState(p)!;
            for (const [key, value] of Object.entries(expected.state[i])) {
              if (typeof value === 'number') assert.equal(st[key], value, `step ${step + 1} p${i} ${key}`);
              else worst = Math.max(worst, close(`step ${step + 1} p${i} ${key}`, (st[key] as Tensor).dataSync(), value));
            }
          });
        });
        console.log(`${file}/${c.name}: max abs error ${worst.toExponential(2)}`);
      });
    }
  });
}
