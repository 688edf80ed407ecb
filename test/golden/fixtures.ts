/**
 * Loader and runner for the PyTorch golden fixtures in ../shared/fixtures/ops.
 * Reusable for any backend: `runOpFixtures('gpu')` returns one result per case,
 * `registerOpFixtureTests('gpu')` registers one node:test test per case.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  add, concat, crossEntropy, embedding, expand, gather, indexSelect, layerNorm, logSoftmax, maskedFill, matmul, max,
  mean, mul, permute, pow, reshape, rmsNorm, scaledDotProductAttention, slice, softmax, split, stack, sum, tensor, tidy,
  transpose, variance, view, where, type DType, type Tensor,
} from '@lowrank/core';
import * as core from '@lowrank/core';
import { fixturesDir } from '../fixtures-dir.ts';

export interface FixtureTensor {
  shape: number[];
  dtype?: DType;
  data: number[];
}

export interface FixtureInput extends FixtureTensor {
  name: string;
}

export type Attrs = Record<string, unknown>;

export interface FixtureCase {
  name: string;
  expr: string;
  inputs: FixtureInput[];
  attrs: Attrs;
  output: FixtureTensor | FixtureTensor[];
  upstream: FixtureTensor | FixtureTensor[];
  grads: (FixtureTensor | null)[];
}

export interface OpFixture {
  op: string;
  semantics: string;
  cases: FixtureCase[];
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export { fixturesDir };

export const hasFixtures = existsSync(path.join(fixturesDir, 'ops'));

/** Every ops/*.json file, sorted by op name. */
export function loadOpFixtures(): OpFixture[] {
  const dir = path.join(fixturesDir, 'ops');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as OpFixture);
}

/** The suggested float32 tolerance: |actual - expected| <= atol + rtol * |expected|. */
export const ATOL = 1e-5;
export const RTOL = 1e-4;

export type OpFn = (inputs: Tensor[], attrs: Attrs) => Tensor | Tensor[];

type AxisAttr = number | number[] | null;
const num = (attrs: Attrs, key: string): number => attrs[key] as number;
const ints = (attrs: Attrs, key: string): number[] => attrs[key] as number[];
const axisOf = (attrs: Attrs): AxisAttr => (attrs.axis ?? null) as AxisAttr;
const bool = (attrs: Attrs, key: string): boolean => attrs[key] === true;

function unaryOp(name: 'neg' | 'sqrt' | 'exp' | 'log' | 'tanh' | 'sigmoid' | 'relu' | 'gelu' | 'silu'): OpFn {
  return ([x]) => core[name](x);
}

/** How each fixture op maps onto the lowrank API. */
export const opTable: Record<string, OpFn> = {
  neg: unaryOp('neg'),
  sqrt: unaryOp('sqrt'),
  exp: unaryOp('exp'),
  log: unaryOp('log'),
  tanh: unaryOp('tanh'),
  sigmoid: unaryOp('sigmoid'),
  relu: unaryOp('relu'),
  gelu: unaryOp('gelu'),
  silu: unaryOp('silu'),
  add: ([a, b]) => add(a, b),
  sub: ([a, b]) => core.sub(a, b),
  mul: ([a, b]) => mul(a, b),
  div: ([a, b]) => core.div(a, b),
  pow: ([x, e], attrs) => (e ? pow(x, e) : pow(x, num(attrs, 'exponent'))),
  matmul: ([a, b], attrs) => matmul(a, b, { transposeA: bool(attrs, 'transposeA'), transposeB: bool(attrs, 'transposeB') }),
  sum: ([x], attrs) => sum(x, axisOf(attrs), bool(attrs, 'keepdim')),
  mean: ([x], attrs) => mean(x, axisOf(attrs), bool(attrs, 'keepdim')),
  max: ([x], attrs) => max(x, axisOf(attrs), bool(attrs, 'keepdim')),
  var: ([x], attrs) => variance(x, axisOf(attrs), bool(attrs, 'keepdim'), attrs.unbiased !== false),
  reshape: ([x], attrs) => reshape(x, ints(attrs, 'shape')),
  view: ([x], attrs) => view(x, ints(attrs, 'shape')),
  transpose: ([x], attrs) => transpose(x, num(attrs, 'axis0'), num(attrs, 'axis1')),
  permute: ([x], attrs) => permute(x, ints(attrs, 'perm')),
  slice: ([x], attrs) =>
    slice(x, { axes: ints(attrs, 'axes'), starts: ints(attrs, 'starts'), ends: ints(attrs, 'ends'), steps: ints(attrs, 'steps') }),
  concat: (xs, attrs) => concat(xs, num(attrs, 'axis')),
  split: ([x], attrs) => split(x, ints(attrs, 'sizes'), num(attrs, 'axis')),
  stack: (xs, attrs) => stack(xs, num(attrs, 'axis')),
  expand: ([x], attrs) => expand(x, ints(attrs, 'shape')),
  where: ([cond, a, b]) => where(cond, a, b),
  maskedFill: ([x, mask], attrs) => maskedFill(x, mask, num(attrs, 'value')),
  gather: ([x, index], attrs) => gather(x, index, num(attrs, 'axis')),
  indexSelect: ([x, index], attrs) => indexSelect(x, num(attrs, 'axis'), index),
  embedding: ([weight, indices]) => embedding(weight, indices),
  softmax: ([x], attrs) => softmax(x, num(attrs, 'axis')),
  logSoftmax: ([x], attrs) => logSoftmax(x, num(attrs, 'axis')),
  crossEntropy: ([logits, targets], attrs) =>
    crossEntropy(logits, targets, {
      ignoreIndex: num(attrs, 'ignoreIndex'),
      reduction: attrs.reduction as 'mean' | 'sum',
    }),
  layerNorm: ([x, w, b], attrs) => layerNorm(x, w, b, num(attrs, 'eps')),
  rmsNorm: ([x, w], attrs) => rmsNorm(x, w, num(attrs, 'eps')),
  scaledDotProductAttention: ([q, k, v], attrs) =>
    scaledDotProductAttention(q, k, v, { causal: bool(attrs, 'causal'), scale: num(attrs, 'scale') }),
};

export interface CaseResult {
  op: string;
  name: string;
  backend: string;
  ok: boolean;
  /** Largest |actual - expected| over outputs and grads. */
  maxAbsError: number;
  /** One line per mismatch (shape or first element out of tolerance), or the thrown error. */
  failures: string[];
}

/** Makes a fixture input tensor: float32 values rounded with Math.fround; ints and bools as given. */
export function inputTensor(t: FixtureTensor, backend: string): Tensor {
  const dtype = t.dtype ?? 'float32';
  const data = dtype === 'float32' ? t.data.map((v) => Math.fround(v)) : t.data;
  return tensor(data, { shape: t.shape, dtype, backend });
}

function compare(what: string, actual: Tensor | null, expected: FixtureTensor, failures: string[]): number {
  if (!actual) {
    failures.push(`${what}: no gradient computed (expected shape [${expected.shape.join(', ')}])`);
    return Infinity;
  }
  if (actual.shape.length !== expected.shape.length || actual.shape.some((d, i) => d !== expected.shape[i])) {
    failures.push(`${what}: shape [${actual.shape.join(', ')}] vs expected [${expected.shape.join(', ')}]`);
    return Infinity;
  }
  const values = actual.dataSync();
  let worst = 0;
  let reported = false;
  for (let i = 0; i < expected.data.length; i++) {
    const e = expected.data[i];
    const err = Math.abs(values[i] - e);
    if (!(err <= ATOL + RTOL * Math.abs(e))) {
      if (!reported) failures.push(`${what}[${i}]: ${values[i]} vs expected ${e}`);
      reported = true;
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
    } else {
      worst = Math.max(worst, err);
    }
  }
  return worst;
}

/** Runs one case on a backend: forward, backward(upstream), then compares outputs and grads. */
export function runOpCase(op: string, c: FixtureCase, backend = 'cpu'): CaseResult {
  const failures: string[] = [];
  let maxAbsError = 0;
  const fn = opTable[op];
  if (!fn) {
    return { op, name: c.name, backend, ok: false, maxAbsError: Infinity, failures: [`no entry for op '${op}' in opTable`] };
  }
  try {
    tidy(() => {
      const inputs = c.inputs.map((t) => {
        const x = inputTensor(t, backend);
        if (x.dtype === 'float32') x.requiresGrad_(true);
        return x;
      });
      const out = fn(inputs, c.attrs);
      const outs = Array.isArray(out) ? out : [out];
      const expectedOuts = Array.isArray(c.output) ? c.output : [c.output];
      const ups = Array.isArray(c.upstream) ? c.upstream : [c.upstream];
      if (outs.length !== expectedOuts.length) failures.push(`output count ${outs.length} vs expected ${expectedOuts.length}`);
      outs.forEach((o, i) => {
        if (expectedOuts[i]) maxAbsError = Math.max(maxAbsError, compare(`output${outs.length > 1 ? `[${i}]` : ''}`, o, expectedOuts[i], failures));
      });
      if (Array.isArray(out)) {
        // L = sum_i sum(piece_i * upstream_i)
        let loss: Tensor | null = null;
        out.forEach((piece, i) => {
          const term = sum(mul(piece, inputTensor(ups[i], backend)));
          loss = loss ? add(loss, term) : term;
        });
        if (loss) (loss as Tensor).backward();
      } else {
        out.backward(inputTensor(ups[0], backend));
      }
      c.grads.forEach((g, i) => {
        if (g) maxAbsError = Math.max(maxAbsError, compare(`grad of ${c.inputs[i].name}`, inputs[i].grad, g, failures));
        else if (inputs[i].grad) failures.push(`grad of ${c.inputs[i].name}: expected none`);
      });
      for (const x of inputs) x.grad?.dispose();
    });
  } catch (err) {
    failures.push(`threw: ${(err as Error).message}`);
    maxAbsError = Infinity;
  }
  return { op, name: c.name, backend, ok: failures.length === 0, maxAbsError, failures };
}

/** Every fixture case on a backend (optionally only some ops). */
export function runOpFixtures(backend = 'cpu', ops?: readonly string[]): CaseResult[] {
  const results: CaseResult[] = [];
  for (const fixture of loadOpFixtures()) {
    if (ops && !ops.includes(fixture.op)) continue;
    for (const c of fixture.cases) results.push(runOpCase(fixture.op, c, backend));
  }
  return results;
}

/** Registers one node:test test per fixture case for a backend: `registerOpFixtureTests('gpu')`. */
export function registerOpFixtureTests(backend = 'cpu'): void {
  const skip = hasFixtures ? false : `no fixtures at ${fixturesDir}`;
  describe(`golden op fixtures on ${backend}`, { skip }, () => {
    if (!hasFixtures) return;
    for (const fixture of loadOpFixtures()) {
      describe(fixture.op, () => {
        for (const c of fixture.cases) {
          test(c.name, () => {
            const r = runOpCase(fixture.op, c, backend);
            assert.ok(r.ok, `${fixture.op}/${c.name} on ${backend} (${c.expr}):\n  ${r.failures.join('\n  ')}`);
          });
        }
      });
    }
  });
}
