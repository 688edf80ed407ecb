import { Tensor, add, keep, mul, noGrad, sub, tidy } from '@lowrank/core';
import { Optimizer, type ParamGroupInput, type ParamState } from './optimizer.ts';

/** SGD hyperparameters (PyTorch names in camelCase). */
export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/**
 * PyTorch SGD with momentum, dampening, Nesterov and L2 weight decay.
 * @example const opt = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
 */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: readonly Tensor[] | readonly ParamGroupInput<SGDOptions>[], opts: Partial<SGDOptions> = {}) {
    super(params, {
      lr: opts.lr ?? 1e-3,
      momentum: opts.momentum ?? 0,
      dampening: opts.dampening ?? 0,
      weightDecay: opts.weightDecay ?? 0,
      nesterov: opts.nesterov ?? false,
    });
  }

  protected validate(h: SGDOptions): void {
    const bad: string[] = [];
    if (!(h.lr >= 0)) bad.push(`lr must be >= 0, got ${h.lr}`);
    if (!(h.momentum >= 0)) bad.push(`momentum must be >= 0, got ${h.momentum}`);
    if (!(h.weightDecay >= 0)) bad.push(`weightDecay must be >= 0, got ${h.weightDecay}`);
    if (h.nesterov && (h.momentum <= 0 || h.dampening !== 0)) bad.push('nesterov needs momentum > 0 and dampening 0');
    if (bad.length) throw new Error(`SGD: ${bad.join('; ')}`);
  }

  protected update(p: Tensor, grad: Tensor, s: ParamState, h: SGDOptions): void {
    noGrad(() => {
      const next = tidy(() => {
        let g = h.weightDecay !== 0 ? add(grad, mul(p, h.weightDecay)) : grad;
        if (h.momentum !== 0) {
          const old = s.momentumBuffer as Tensor | undefined;
          const buf = old ? add(mul(old, h.momentum), mul(g, 1 - h.dampening)) : g.clone();
          keep(buf);
          old?.dispose();
          s.momentumBuffer = buf;
          g = h.nesterov ? add(g, mul(buf, h.momentum)) : buf;
        }
        return sub(p, mul(g, h.lr));
      });
      p.assign(next);
      next.dispose();
    });
  }
}
