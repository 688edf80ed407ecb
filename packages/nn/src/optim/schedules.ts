import type { Optimizer, BaseHyper } from './optimizer.ts';

/** step -> learning-rate multiplier (PyTorch LambdaLR's lr_lambda). */
export type LrLambda = (step: number) => number;

export interface WarmupScheduleOptions {
  warmupSteps: number;
  totalSteps: number;
  /** Multiplier reached at totalSteps (default 0). */
  minRatio?: number;
}

/**
 * Linear warmup from 0 to 1, then cosine decay to minRatio at totalSteps (held after).
 * @example const f = cosineWithWarmup({ warmupSteps: 100, totalSteps: 1000 }); f(50) // 0.5
 */
export function cosineWithWarmup(o: WarmupScheduleOptions): LrLambda {
  const min = o.minRatio ?? 0;
  return (step) => {
    if (step < o.warmupSteps) return (step + 1) / Math.max(1, o.warmupSteps);
    const t = Math.min(1, (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps));
    return min + (1 - min) * 0.5 * (1 + Math.cos(Math.PI * t));
  };
}

/**
 * Linear warmup from 0 to 1, then linear decay to minRatio at totalSteps (held after).
 * @example const f = linearWithWarmup({ warmupSteps: 10, totalSteps: 110 }); f(60) // 0.5
 */
export function linearWithWarmup(o: WarmupScheduleOptions): LrLambda {
  const min = o.minRatio ?? 0;
  return (step) => {
    if (step < o.warmupSteps) return (step + 1) / Math.max(1, o.warmupSteps);
    const t = Math.min(1, (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps));
    return min + (1 - min) * (1 - t);
  };
}

/**
 * Sets each group's lr to base lr * fn(step); call `step()` after each optimizer step.
 * @example const sched = new LambdaLR(opt, cosineWithWarmup({ warmupSteps: 10, totalSteps: 100 }));
 */
export class LambdaLR {
  readonly baseLrs: number[];
  lastStep = 0;

  constructor(readonly optimizer: Optimizer<BaseHyper>, readonly fn: LrLambda) {
    this.baseLrs = optimizer.paramGroups.map((g) => g.hyper.lr);
    this.apply();
  }

  /** Advances one step and updates the learning rates. @example opt.step(); sched.step(); */
  step(): void {
    this.lastStep++;
    this.apply();
  }

  /** Current lr of each group. @example sched.getLastLr()[0] */
  getLastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.hyper.lr);
  }

  stateDict(): { lastStep: number; baseLrs: number[] } {
    return { lastStep: this.lastStep, baseLrs: [...this.baseLrs] };
  }

  loadStateDict(s: { lastStep: number; baseLrs: number[] }): void {
    this.lastStep = s.lastStep;
    this.baseLrs.splice(0, this.baseLrs.length, ...s.baseLrs);
    this.apply();
  }

  private apply(): void {
    const f = this.fn(this.lastStep);
    this.optimizer.paramGroups.forEach((g, i) => (g.hyper.lr = this.baseLrs[i] * f));
  }
}
