import { getBackend, registerBackend } from './backend.ts';
import { CpuBackend } from './backends/cpu/index.ts';
import { backward, noGrad } from './autograd.ts';
import { globalRng } from './rng.ts';
import { fmt } from './shape.ts';
import { makeTensor, type Tensor } from './tensor.ts';
import { mul, sum } from './ops/index.ts';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Throw on mismatch (default true), like torch.autograd.gradcheck. */
  raise?: boolean;
}

export interface GradcheckReport {
  ok: boolean;
  maxAbsError: number;
  /** First mismatch, if any. */
  failure?: string;
}

const F64 = 'cpu-float64';
registerBackend(F64, () => new CpuBackend(F64, 'float64'));

/**
 * Compares autograd's gradients with central differences, in float64 on the
 * cpu backend: `gradcheck((a, b) => a.mul(b).sum(), [a, b])`.
 * Float inputs are checked; int32/bool inputs pass through.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[], opts: GradcheckOptions = {}): GradcheckReport {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-3;
  const be = getBackend(F64);
  const xs = inputs.map((t) => {
    const values = t.dataSync();
    const c = makeTensor(be, be.upload(values, t.dtype), t.shape, t.dtype);
    if (t.dtype === 'float32') c.requiresGrad_(true);
    return c;
  });
  const probe = noGrad(() => fn(...xs));
  // A fixed random upstream makes L = sum(out * R) sensitive to every output.
  const upstream = makeTensor(be, be.upload(Array.from({ length: probe.size }, () => globalRng.random() * 2 - 1), 'float32'), probe.shape, 'float32');
  const loss = (): number => noGrad(() => sum(mul(fn(...xs), upstream)).item());
  const out = fn(...xs);
  backward(sum(mul(out, upstream)));
  let maxAbsError = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    if (x.dtype !== 'float32') continue;
    const data = x.data_ as Float64Array;
    const analytic = x.grad ? (x.grad.dataSync() as Float64Array) : new Float64Array(x.size);
    for (let j = 0; j < x.size; j++) {
      const orig = data[j];
      data[j] = orig + eps;
      const plus = loss();
      data[j] = orig - eps;
      const minus = loss();
      data[j] = orig;
      const numeric = (plus - minus) / (2 * eps);
      const err = Math.abs(numeric - analytic[j]);
      maxAbsError = Math.max(maxAbsError, err);
      if (!(err <= atol + rtol * Math.abs(numeric))) {
        const failure = `gradcheck: input ${i} ${fmt(x.shape)} element ${j}: analytic ${analytic[j]} vs numeric ${numeric}`;
        if (opts.raise ?? true) throw new Error(failure);
        return { ok: false, maxAbsError: err, failure };
      }
    }
  }
  return { ok: true, maxAbsError };
}
