import {
  Tensor, cast, clone, fmt, forwardScope, getBackend, isFloatDtype, keep, noGrad, shapesEqual, tensor, type DType,
} from '@lowrank/core';

/** A state-dict value: a tensor, or a raw record such as a fixture's `{shape, data}`. */
export interface RawStateValue {
  shape: readonly number[];
  data: ArrayLike<number>;
  dtype?: string;
}

export type StateValue = Tensor | RawStateValue;

/** Keys in registration order (tied weights appear under every key, like PyTorch). */
export type StateDict = Record<string, Tensor>;

export interface LoadStateDictOptions {
  /** Missing and unexpected keys are errors (default true); shape mismatches always are. */
  strict?: boolean;
  /**
   * Storage for the loaded weight matrices (parameters of rank >= 2):
   * 'bfloat16' or 'float16' halves their memory and freezes them (16-bit
   * tensors do not train; LoRA adapters added later stay float32). 1-D
   * parameters (norms, biases) stay float32. Default: keep each parameter's dtype.
   */
  dtype?: ParamDtype;
}

/** The dtypes a parameter can be stored in. */
export type ParamDtype = 'float32' | 'bfloat16' | 'float16';

export interface ModuleToOptions {
  backend?: string;
  /**
   * 'bfloat16' / 'float16': store the frozen weight matrices (rank >= 2,
   * requiresGrad false) in 16 bits; trainable parameters, 1-D ones, gradients
   * and optimizer state stay float32. 'float32' widens them back.
   */
  dtype?: ParamDtype;
}

const isParamDtype = (d: unknown): d is ParamDtype => d === 'float32' || d === 'bfloat16' || d === 'float16';

export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/**
 * Base class of every layer and model, after PyTorch's nn.Module: children and
 * parameters are registered under Hugging Face style names (the state-dict
 * keys), while TypeScript fields use camelCase.
 *
 * @example class Net extends Module { fc = this.register('fc', new Linear(4, 2)); forward(x: Tensor) { return this.fc.forward(x); } }
 */
export abstract class Module {
  /** Training mode (dropout active); flipped by `train()` / `eval()`. */
  training = true;
  private readonly children_ = new Map<string, Module>();
  private readonly params_ = new Map<string, Tensor>();

  /**
   * The layer's computation; subclasses declare their own parameters. A
   * wrapper that passes whatever it gets to any Module needs no cast:
   * `forward(...args: never[]): unknown { return this.inner.forward(...args); }`
   */
  abstract forward(...args: never[]): unknown;

  constructor() {
    // Every forward runs in the engine's forward scope: the intermediates it
    // makes live on only while a backward still reads them, with no release call.
    const forward = this.forward;
    this.forward = (...args: never[]): unknown => forwardScope(() => forward.apply(this, args));
  }

  /**
   * Registers a child module under `name` and returns it.
   * @example this.qProj = this.register('q_proj', new Linear(c, c));
   */
  register<M extends Module>(name: string, child: M): M {
    checkName(name);
    if (this.params_.has(name)) throw new Error(`register: '${name}' is already a parameter of ${this.constructor.name}`);
    const old = this.children_.get(name);
    this.children_.set(name, child);
    if (old && old !== child) this.syncFields(old, child);
    for (const [key, p] of child.namedParameters()) p.name = `${name}.${key}`;
    return child;
  }

  /**
   * Registers a parameter: marks it trainable, names it, and `keep()`s it so
   * no `tidy` scope disposes it. Re-registering a name replaces the tensor
   * (and any field that held the old one), which is how weights are tied.
   * @example this.weight = this.registerParameter('weight', zeros([out, inF]));
   */
  registerParameter(name: string, t: Tensor): Tensor {
    checkName(name);
    if (this.children_.has(name)) throw new Error(`registerParameter: '${name}' is already a submodule of ${this.constructor.name}`);
    if (!isFloatDtype(t.dtype)) throw new Error(`registerParameter: '${name}' must be float32 (or a frozen 16-bit float), got ${t.describe()}`);
    if (!t.isLeaf) throw new Error(`registerParameter: '${name}' must be a leaf tensor (detach() it first)`);
    const old = this.params_.get(name);
    keep(t);
    if (!t.name) t.name = name;
    if (old === undefined && t.dtype === 'float32') t.requiresGrad_(true);
    this.params_.set(name, t);
    if (old && old !== t) this.syncFields(old, t);
    return t;
  }

  /** Direct children in registration order. @example for (const [name, m] of model.namedChildren()) {} */
  namedChildren(): [string, Module][] {
    return [...this.children_];
  }

  /** This module's own parameters (not its children's). */
  ownParameters(): [string, Tensor][] {
    return [...this.params_];
  }

  /**
   * Every module with its dotted path ('' is this one), depth first in registration order.
   * @example model.namedModules().filter(([, m]) => m instanceof Linear)
   */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.children_) out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name));
    return out;
  }

  /**
   * Parameters with dotted paths, each tensor once (tied weights under their first name).
   * @example for (const [name, p] of model.namedParameters()) console.log(name, p.shape);
   */
  namedParameters(): [string, Tensor][] {
    const seen = new Set<Tensor>();
    return this.allParameters().filter(([, p]) => (seen.has(p) ? false : (seen.add(p), true)));
  }

  /** The distinct parameters. @example new AdamW(model.parameters(), { lr: 3e-4 }) */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Total number of parameter elements, tied weights once. @example model.numParameters() */
  numParameters(): number {
    let n = 0;
    for (const p of this.parameters()) n += p.size;
    return n;
  }

  /**
   * Every parameter under every key, tied ones included (the tensors themselves, not copies).
   * @example const sd = model.stateDict(); sd['lm_head.weight'].shape
   */
  stateDict(): StateDict {
    const out: StateDict = {};
    for (const [k, p] of this.allParameters()) out[k] = p;
    return out;
  }

  /**
   * Copies values into the parameters. Everything is checked before anything
   * is written: on any missing (strict), unexpected (strict) or mis-shaped
   * key, one Error lists all of them and the module is left untouched.
   * @example model.loadStateDict(fixture.stateDict)
   */
  loadStateDict(sd: Record<string, StateValue>, opts: LoadStateDictOptions = {}): LoadStateDictResult {
    const error = this.checkStateDict(sd, opts);
    if (error) throw new Error(error);
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !Object.hasOwn(sd, k));
    const unexpectedKeys = Object.keys(sd).filter((k) => !Object.hasOwn(own, k));
    const target = opts.dtype;
    noGrad(() => {
      for (const [k, v] of Object.entries(sd)) {
        const p = own[k];
        if (!p) continue;
        if (target !== undefined && p.rank >= 2 && p.dtype !== target) {
          if (target !== 'float32') p.requiresGrad_(false);
          p.castTo_(target);
        }
        const src = v instanceof Tensor
          ? clone(v.backend === p.backend ? v : v.to(p.backend.name))
          : tensor(Float32Array.from(v.data), { shape: [...p.shape], backend: p.backend.name });
        const typed = src.dtype === p.dtype ? src : cast(src, p.dtype);
        p.assign(typed);
        if (typed !== src) typed.dispose();
        src.dispose();
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /**
   * What `loadStateDict` would reject (missing/unexpected keys, shapes, values), as one
   * message, or null; changes nothing. @example const err = model.checkStateDict(sd)
   */
  checkStateDict(sd: Record<string, StateValue>, opts: LoadStateDictOptions = {}): string | null {
    const strict = opts.strict ?? true;
    if (opts.dtype !== undefined && !isParamDtype(opts.dtype)) {
      return `loadStateDict: dtype must be 'float32', 'bfloat16' or 'float16', got ${JSON.stringify(opts.dtype)}`;
    }
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !Object.hasOwn(sd, k));
    const unexpectedKeys = Object.keys(sd).filter((k) => !Object.hasOwn(own, k));
    const problems: string[] = [];
    for (const [k, v] of Object.entries(sd)) {
      const p = own[k];
      if (!p) continue;
      const msg = checkValue(v, p);
      if (msg) problems.push(`  ${k}: ${msg}`);
    }
    const errors: string[] = [];
    if (strict && missingKeys.length) errors.push(`Missing key(s): ${missingKeys.map((k) => `'${k}'`).join(', ')}`);
    if (strict && unexpectedKeys.length) errors.push(`Unexpected key(s): ${unexpectedKeys.map((k) => `'${k}'`).join(', ')}`);
    if (problems.length) errors.push(`Size mismatch / invalid value(s):\n${problems.join('\n')}`);
    return errors.length ? `Error(s) in loading state_dict for ${this.constructor.name}:\n${errors.join('\n')}` : null;
  }

  /** Training mode on (or off) for this module and every descendant. @example model.train() */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Evaluation mode (dropout off). @example model.eval() */
  eval(): this {
    return this.train(false);
  }

  /**
   * Moves every parameter (and its gradient is dropped) to another backend in place;
   * identities are kept, so tied weights stay tied. @example model.to('gpu')
   */
  to(target: string | ModuleToOptions): this {
    if (typeof target !== 'string') {
      if (target.backend !== undefined) this.toBackend(target.backend);
      if (target.dtype !== undefined) this.toDtype(target.dtype);
      return this;
    }
    return this.toBackend(target);
  }

  /**
   * Stores the frozen weight matrices in `dtype` (see ModuleToOptions.dtype), in
   * place; tied weights stay tied. An error when there is nothing frozen to convert.
   */
  private toDtype(dtype: ParamDtype): this {
    if (!isParamDtype(dtype)) {
      throw new Error(`Module.to: dtype must be 'float32', 'bfloat16' or 'float16', got ${JSON.stringify(dtype)}`);
    }
    const matrices = this.parameters().filter((p) => p.rank >= 2);
    const frozen = matrices.filter((p) => !p.requiresGrad);
    if (dtype !== 'float32' && matrices.length > 0 && frozen.length === 0) {
      throw new Error(`Module.to({ dtype: '${dtype}' }): every weight matrix of ${this.constructor.name} trains, and ${dtype} tensors do not; freeze the base first (getPeftModel does, or requiresGrad_(false))`);
    }
    noGrad(() => {
      for (const p of frozen) p.castTo_(dtype as DType);
    });
    return this;
  }

  private toBackend(backendName: string): this {
    const target = getBackend(backendName);
    const empty = this.namedParameters().filter(([, p]) => p.backend !== target && !p.backend.hasStorage && target.hasStorage);
    if (empty.length) {
      throw new Error(`Module.to('${backendName}'): ${empty.length} parameter(s) live on '${empty[0][1].backend.name}' and hold no values (first: '${empty[0][0]}'); load a state dict instead`);
    }
    for (const p of this.parameters()) {
      if (p.grad && p.grad.backend.name !== backendName) {
        p.grad.dispose();
        p.grad = null;
      }
      p.moveTo_(backendName);
    }
    return this;
  }

  /** Calls fn on every module, children first, then this one (PyTorch's order). @example model.apply((m) => m.eval()) */
  apply(fn: (m: Module) => void): this {
    for (const [, child] of this.children_) child.apply(fn);
    fn(this);
    return this;
  }

  /** Drops every parameter's gradient. @example model.zeroGrad() */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      if (p.grad) p.grad.dispose();
      p.grad = null;
    }
  }

  /**
   * The submodule at a dotted path ('' is this module). @example model.getSubmodule('layers.0.self_attn.q_proj')
   */
  getSubmodule(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    const parts = path.split('.');
    for (let i = 0; i < parts.length; i++) {
      const next = m.children_.get(parts[i]);
      if (!next) {
        throw new Error(`getSubmodule: ${m.constructor.name} at '${parts.slice(0, i).join('.')}' has no child '${parts[i]}' (path '${path}')`);
      }
      m = next;
    }
    return m;
  }

  /**
   * Replaces the submodule at a dotted path; the parent's field that held the old
   * child now holds the new one (how LoRA swaps a Linear for a LoraLinear).
   * @example model.setSubmodule('layers.0.self_attn.q_proj', new LoraLinear(old, cfg))
   */
  setSubmodule(path: string, module: Module): void {
    const dot = path.lastIndexOf('.');
    const parent = this.getSubmodule(dot < 0 ? '' : path.slice(0, dot));
    const name = path.slice(dot + 1);
    if (!parent.children_.has(name)) throw new Error(`setSubmodule: no submodule '${name}' in '${path}'`);
    parent.register(name, module);
  }

  /** The tensor behind a dotted parameter path. @example model.getParameter('norm.weight') */
  getParameter(path: string): Tensor {
    const dot = path.lastIndexOf('.');
    const owner = this.getSubmodule(dot < 0 ? '' : path.slice(0, dot));
    const p = owner.params_.get(path.slice(dot + 1));
    if (!p) throw new Error(`getParameter: no parameter '${path}'`);
    return p;
  }

  /** Every parameter under every path, duplicates (tied weights) included. */
  private allParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, p] of this.params_) out.push([prefix + name, p]);
    for (const [name, child] of this.children_) out.push(...child.allParameters(`${prefix}${name}.`));
    return out;
  }

  /** Points every own field (and array element of a field) that held `old` at `value`. */
  private syncFields(old: unknown, value: unknown): void {
    const self = this as unknown as Record<string, unknown>;
    for (const key of Object.keys(self)) {
      const field = self[key];
      if (field === old) self[key] = value;
      else if (Array.isArray(field)) {
        for (let i = 0; i < field.length; i++) if (field[i] === old) field[i] = value;
      }
    }
  }
}

function checkName(name: string): void {
  if (name === '' || name.includes('.')) throw new Error(`Module: invalid name '${name}' (non-empty, no dots)`);
}

function checkValue(v: StateValue, p: Tensor): string | null {
  if (v instanceof Tensor) {
    if (v.isDisposed) return 'the tensor was disposed';
    if (!v.backend.hasStorage && p.backend.hasStorage) return `the tensor lives on '${v.backend.name}' and holds no values`;
    if (!isFloatDtype(v.dtype)) return `dtype ${v.dtype}, expected a float dtype`;
    if (!shapesEqual(v.shape, p.shape)) return `shape ${fmt(v.shape)} in checkpoint, ${fmt(p.shape)} in model`;
    return null;
  }
  if (typeof v !== 'object' || v === null || !Array.isArray(v.shape)) return 'not a Tensor or {shape, data} record';
  if (v.dtype !== undefined && !isParamDtype(v.dtype)) return `dtype ${v.dtype}, expected float32 (or bfloat16, float16)`;
  if (!shapesEqual(v.shape, p.shape)) return `shape ${fmt(v.shape)} in checkpoint, ${fmt(p.shape)} in model`;
  const n = p.size;
  if (!v.data || typeof v.data.length !== 'number' || v.data.length !== n) {
    return `data has ${v.data?.length ?? 'no'} values, shape ${fmt(p.shape)} needs ${n}`;
  }
  return null;
}

/**
 * A list of modules registered under '0', '1', ... (PyTorch's ModuleList).
 * @example this.layers = this.register('layers', new ModuleList(blocks));
 */
export class ModuleList<M extends Module = Module> extends Module {
  constructor(modules: readonly M[] = []) {
    super();
    modules.forEach((m, i) => this.register(String(i), m));
  }

  get length(): number {
    return this.namedChildren().length;
  }

  /** The i-th module (reads the registry, so `setSubmodule` swaps show up). @example layers.at(0) */
  at(i: number): M {
    return this.getSubmodule(String(i)) as M;
  }

  /** Appends a module. @example layers.append(new Block(cfg)) */
  append(m: M): this {
    this.register(String(this.length), m);
    return this;
  }

  [Symbol.iterator](): Iterator<M> {
    return (this.namedChildren().map(([, m]) => m) as M[])[Symbol.iterator]();
  }

  forward(): never {
    throw new Error('ModuleList has no forward; iterate over its modules');
  }
}
