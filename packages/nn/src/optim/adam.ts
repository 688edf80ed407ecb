import { Tensor, adamwUpdate_, keep, tensor, zeros, type AdamHyper } from '@lowrank/core';
import { Optimizer, type ParamGroupInput, type ParamState } from './optimizer.ts';

/** Adam / AdamW hyperparameters (PyTorch names in camelCase). */
export interface AdamOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
}

abstract class AdamBase extends Optimizer<AdamOptions> {
  protected abstract readonly decoupled: boolean;

  constructor(params: readonly Tensor[] | readonly ParamGroupInput<AdamOptions>[], opts: Partial<AdamOptions>, defaultWd: number) {
    super(params, {
      lr: opts.lr ?? 1e-3,
      betas: opts.betas ?? [0.9, 0.999],
      eps: opts.eps ?? 1e-8,
      weightDecay: opts.weightDecay ?? defaultWd,
      amsgrad: opts.amsgrad ?? false,
    });
  }

  protected validate(h: AdamOptions): void {
    const bad: string[] = [];
    if (!(h.lr >= 0)) bad.push(`lr must be >= 0, got ${h.lr}`);
    if (!(h.betas[0] >= 0 && h.betas[0] < 1 && h.betas[1] >= 0 && h.betas[1] < 1)) bad.push(`betas must be in [0, 1), got [${h.betas}]`);
    if (!(h.eps >= 0)) bad.push(`eps must be >= 0, got ${h.eps}`);
    if (!(h.weightDecay >= 0)) bad.push(`weightDecay must be >= 0, got ${h.weightDecay}`);
    if (bad.length) throw new Error(`${this.constructor.name}: ${bad.join('; ')}`);
  }

  protected update(p: Tensor, g: Tensor, s: ParamState, h: AdamOptions): void {
    const backend = p.backend.name;
    if (s.step === undefined) {
      s.step = 0;
      s.expAvg = keep(zeros(p.shape, { backend }));
      s.expAvgSq = keep(zeros(p.shape, { backend }));
      if (h.amsgrad) s.maxExpAvgSq = keep(zeros(p.shape, { backend }));
    }
    const step = (s.step as number) + 1;
    s.step = step;
    const m = s.expAvg as Tensor;
    const v = s.expAvgSq as Tensor;
    const hyper: AdamHyper = {
      lr: h.lr, beta1: h.betas[0], beta2: h.betas[1], eps: h.eps, weightDecay: h.weightDecay, step, decoupled: this.decoupled,
    };
    if (h.amsgrad) {
      if (!s.maxExpAvgSq) s.maxExpAvgSq = keep(zeros(p.shape, { backend }));
      amsgradHost(p, g, m, v, s.maxExpAvgSq as Tensor, hyper);
      return;
    }
    adamwUpdate_(p, g, m, v, hyper);
  }
}

/** AMSGrad has no fused kernel: computed on the host in float64 and written back. */
function amsgradHost(p: Tensor, g: Tensor, m: Tensor, v: Tensor, vmax: Tensor, h: AdamHyper): void {
  if (!p.backend.hasStorage) return;
  const P = p.dataSync();
  const G = g.dataSync();
  const M = m.dataSync();
  const Vv = v.dataSync();
  const X = vmax.dataSync();
  const bc1 = 1 - Math.pow(h.beta1, h.step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(h.beta2, h.step));
  const decay = h.decoupled ? 1 - h.lr * h.weightDecay : 1;
  const np = new Float32Array(p.size);
  const nm = new Float32Array(p.size);
  const nv = new Float32Array(p.size);
  const nx = new Float32Array(p.size);
  for (let i = 0; i < p.size; i++) {
    let gi = G[i];
    if (!h.decoupled && h.weightDecay !== 0) gi += h.weightDecay * P[i];
    nm[i] = h.beta1 * M[i] + (1 - h.beta1) * gi;
    nv[i] = h.beta2 * Vv[i] + (1 - h.beta2) * gi * gi;
    nx[i] = Math.max(X[i], nv[i]);
    np[i] = P[i] * decay - ((h.lr / bc1) * nm[i]) / (Math.sqrt(nx[i]) / bc2Sqrt + h.eps);
  }
  const backend = p.backend.name;
  for (const [t, data] of [[p, np], [m, nm], [v, nv], [vmax, nx]] as const) {
    const src = tensor(data, { shape: [...t.shape], backend });
    t.assign(src);
    src.dispose();
  }
}

/**
 * PyTorch Adam (L2 weight decay added to the gradient; optional AMSGrad), fused kernel.
 * @example const opt = new Adam(model.parameters(), { lr: 1e-3 });
 */
export class Adam extends AdamBase {
  protected readonly decoupled = false;

  constructor(params: readonly Tensor[] | readonly ParamGroupInput<AdamOptions>[], opts: Partial<AdamOptions> = {}) {
    super(params, opts, 0);
  }
}

/**
 * PyTorch AdamW (decoupled weight decay, default 0.01), fused kernel.
 * @example const opt = new AdamW(model.parameters(), { lr: 3e-4, weightDecay: 0.1 });
 */
export class AdamW extends AdamBase {
  protected readonly decoupled = true;

  constructor(params: readonly Tensor[] | readonly ParamGroupInput<AdamOptions>[], opts: Partial<AdamOptions> = {}) {
    super(params, opts, 1e-2);
  }
}
