import { Tensor, keep, tensor, type RawTensor } from '@lowrank/core';

/** Per-parameter optimizer state: a step count and named buffers. */
export type ParamState = Record<string, Tensor | number>;

/** A param group: its tensors plus hyperparameter overrides (PyTorch's param_groups). */
export type ParamGroupInput<H> = { params: readonly Tensor[] } & Partial<H>;

export interface ParamGroup<H> {
  params: Tensor[];
  hyper: H;
}

/** Serializable optimizer state (checkpoint values only: numbers, strings, RawTensors). */
export interface OptimizerStateDict {
  type: string;
  groups: { hyper: Record<string, number | boolean | number[]>; params: number[] }[];
  /** Keyed by the parameter's index over all groups. */
  state: Record<string, Record<string, number | RawTensor>>;
}

/** Hyperparameters every optimizer has. */
export interface BaseHyper {
  lr: number;
}

/**
 * Base optimizer: param groups (each tensor once, tied weights included), per-parameter
 * state, `zeroGrad`, and an exact `stateDict` / `loadStateDict` for resuming.
 * @example class MyOpt extends Optimizer<{ lr: number }> { protected update(p, g, s, h) { ... } }
 */
export abstract class Optimizer<H extends BaseHyper> {
  readonly paramGroups: ParamGroup<H>[];
  protected readonly state = new Map<Tensor, ParamState>();

  constructor(params: readonly Tensor[] | readonly ParamGroupInput<H>[], defaults: H) {
    const groups: ParamGroupInput<H>[] = params.length > 0 && params[0] instanceof Tensor
      ? [{ params: params as readonly Tensor[] } as ParamGroupInput<H>]
      : [...(params as readonly ParamGroupInput<H>[])];
    const seen = new Set<Tensor>();
    this.paramGroups = groups.map((g) => {
      const { params: ps, ...overrides } = g;
      const unique: Tensor[] = [];
      for (const p of ps) {
        if (seen.has(p)) continue; // a tied weight is updated once
        seen.add(p);
        unique.push(p);
      }
      return { params: unique, hyper: { ...defaults, ...(overrides as unknown as Partial<H>) } };
    });
    for (const g of this.paramGroups) this.validate(g.hyper);
  }

  /** Checks hyperparameters; throws a clear Error. */
  protected abstract validate(h: H): void;

  /** Updates one parameter in place from its gradient. */
  protected abstract update(p: Tensor, grad: Tensor, state: ParamState, h: H): void;

  /** One optimisation step over every parameter that has a gradient. @example loss.backward(); opt.step(); */
  step(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (!p.grad || !p.requiresGrad) continue;
        let s = this.state.get(p);
        if (!s) {
          s = {};
          this.state.set(p, s);
        }
        this.update(p, p.grad, s, group.hyper);
      }
    }
  }

  /** Drops every parameter's gradient. @example opt.zeroGrad() */
  zeroGrad(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** The learning rate of the first group; setting it sets every group's. @example opt.lr = 1e-3 */
  get lr(): number {
    return this.paramGroups[0]?.hyper.lr ?? 0;
  }

  set lr(value: number) {
    for (const g of this.paramGroups) g.hyper.lr = value;
  }

  /** The state buffers of a parameter (undefined before its first step). @example opt.getState(w)?.expAvg */
  getState(p: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(p);
  }

  /**
   * Frees every state buffer (the moments of Adam, SGD's momentum); the next
   * step starts afresh. @example opt.dispose()
   */
  dispose(): void {
    for (const s of this.state.values()) for (const v of Object.values(s)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
  }

  /** A copy of every group's hyperparameters and every buffer. @example const saved = opt.stateDict() */
  stateDict(): OptimizerStateDict {
    const groups: OptimizerStateDict['groups'] = [];
    const state: OptimizerStateDict['state'] = {};
    let index = 0;
    for (const g of this.paramGroups) {
      const ids: number[] = [];
      for (const p of g.params) {
        const s = this.state.get(p);
        if (s) {
          const out: Record<string, number | RawTensor> = {};
          for (const [k, v] of Object.entries(s)) out[k] = typeof v === 'number' ? v : toRaw(v);
          state[String(index)] = out;
        }
        ids.push(index++);
      }
      groups.push({ hyper: { ...(g.hyper as unknown as Record<string, number | boolean | number[]>) }, params: ids });
    }
    return { type: this.constructor.name, groups, state };
  }

  /**
   * What `loadStateDict` would reject, changing nothing: optimizer kind, group and
   * state shapes, and every saved hyperparameter's type (as the current one) and range
   * (this optimizer's own validation), so `lr: "fast"` or NaN never reaches a step.
   * @example opt.checkStateDict(saved) // []
   */
  checkStateDict(sd: OptimizerStateDict): string[] {
    const problems: string[] = [];
    if (sd.type !== this.constructor.name) problems.push(`saved by ${sd.type}, loading into ${this.constructor.name}`);
    if (sd.groups.length !== this.paramGroups.length) problems.push(`${sd.groups.length} param groups saved, ${this.paramGroups.length} here`);
    const all = this.paramGroups.flatMap((g) => g.params);
    sd.groups.forEach((g, i) => {
      const mine = this.paramGroups[i];
      if (!mine) return;
      if (g.params.length !== mine.params.length) problems.push(`group ${i}: ${g.params.length} params saved, ${mine.params.length} here`);
      const cur = mine.hyper as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(g.hyper)) {
        const want = cur[k];
        const ok = Array.isArray(want)
          ? Array.isArray(v) && v.length === want.length && v.every((x) => typeof x === 'number' && Number.isFinite(x))
          : typeof v === typeof want && (typeof v !== 'number' || Number.isFinite(v));
        if (want === undefined) problems.push(`group ${i}: unknown hyperparameter '${k}'`);
        else if (!ok) problems.push(`group ${i}: hyperparameter '${k}' must be ${Array.isArray(want) ? `${want.length} finite numbers` : `a finite ${typeof want}`}, got ${JSON.stringify(v) ?? String(v)}`);
      }
      if (problems.length === 0) {
        try {
          this.validate({ ...mine.hyper, ...(g.hyper as unknown as Partial<H>) });
        } catch (err) {
          problems.push(`group ${i}: ${(err as Error).message}`);
        }
      }
    });
    for (const [key, s] of Object.entries(sd.state)) {
      const p = all[Number(key)];
      if (!p) {
        problems.push(`state for parameter index ${key}, which does not exist`);
        continue;
      }
      for (const [name, v] of Object.entries(s)) {
        if (typeof v === 'number') {
          if (!Number.isFinite(v)) problems.push(`state ${key}.${name}: ${v} is not finite`);
          continue;
        }
        const n = v.shape.reduce((a, b) => a * b, 1);
        if (n !== p.size || v.data.length !== n) problems.push(`state ${key}.${name}: shape [${v.shape}] does not fit ${p.describe()}`);
      }
    }
    return problems;
  }

  /**
   * Restores `stateDict()` output (same parameters, same order); validates all before changing anything.
   * @example opt.loadStateDict(saved)
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const problems = this.checkStateDict(sd);
    if (problems.length) throw new Error(`${this.constructor.name}.loadStateDict:\n  ${problems.join('\n  ')}`);
    const all = this.paramGroups.flatMap((g) => g.params);
    sd.groups.forEach((g, i) => {
      this.paramGroups[i].hyper = { ...this.paramGroups[i].hyper, ...(g.hyper as unknown as Partial<H>) };
    });
    this.dispose();
    for (const [key, s] of Object.entries(sd.state)) {
      const p = all[Number(key)];
      const out: ParamState = {};
      for (const [name, v] of Object.entries(s)) {
        out[name] = typeof v === 'number'
          ? v
          : keep(tensor(Float32Array.from(v.data), { shape: [...p.shape], backend: p.backend.name }));
      }
      this.state.set(p, out);
    }
  }
}

/** A tensor's values as a RawTensor copy (for checkpoints). @example toRaw(w).data */
export function toRaw(t: Tensor): RawTensor {
  const values = t.dataSync();
  const data = t.dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values);
  return { dtype: t.dtype === 'int32' ? 'int32' : 'float32', shape: [...t.shape], data } as RawTensor;
}
