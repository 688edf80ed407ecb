import { fmt, shapesEqual } from './shape.ts';
import { keep, shareStorage, type Tensor } from './tensor.ts';
import { add, ones, sumTo } from './ops/index.ts';

/** dL/d(input) given dL/d(output); called only for inputs that need a gradient. */
export type GradThunk = (() => Tensor) | null;

export interface GradFn {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Builds one thunk per input; null once the graph has been freed by backward. */
  backward: ((dy: Tensor) => GradThunk[]) | null;
  /** Tensors whose values the backward reads; each holds a `readers` count until it runs. */
  reads: Tensor[];
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording a graph: `noGrad(() => model.forward(x))`. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs fn recording a graph even inside `noGrad` (checkpointing reruns a forward during backward). */
export function withGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Whether an op on these inputs must record a node. */
export function needsGraph(inputs: readonly Tensor[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t.requiresGrad) return true;
  return false;
}

/**
 * Records `out` as the result of `op` on `inputs`. `backward` receives dL/dout
 * and returns one thunk per input (null where no gradient flows). `reads`
 * lists the tensors whose values backward reads (default: inputs and output),
 * so that `release` can free everything else right after the forward pass.
 */
export function attach(
  op: string,
  out: Tensor,
  inputs: readonly Tensor[],
  backward: (dy: Tensor) => GradThunk[],
  reads?: readonly (Tensor | null | false)[],
): Tensor {
  if (!needsGraph(inputs)) return out;
  out.requiresGrad = true;
  const list = reads ? reads.filter((t): t is Tensor => !!t) : [...inputs, out];
  for (const t of list) t.readers++;
  out.gradFn = { op, inputs, backward, reads: list };
  return out;
}

/**
 * Frees an intermediate as soon as no pending backward reads it: now, or when
 * the last such backward has run. For tensors a module made and never hands
 * out, like PyTorch freeing what autograd did not save.
 * @example const h = fc1.forward(x); const y = gelu(h); release(h);
 */
export function release(...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.readers === 0) t.dispose();
    else t.releasePending = true;
  }
}

/**
 * Hands an intermediate over to its successor: returns `next` and releases
 * `prev`, unless an identity op (dropout at p = 0) returned `prev` itself.
 * @example x = supersede(x, block.forward(x));
 */
export function supersede(prev: Tensor, next: Tensor): Tensor {
  if (next !== prev) release(prev);
  return next;
}

/**
 * Disposes internal tensors `ts` (made by an op, never returned to the user)
 * once `node`'s backward has read them, or at once when `node` records no graph.
 */
export function releaseAfterBackward(node: Tensor, ...ts: Tensor[]): void {
  const fn = node.gradFn;
  if (fn?.backward) {
    for (const t of ts) {
      if (fn.reads.includes(t)) continue;
      fn.reads.push(t);
      t.readers++;
    }
  }
  release(...ts);
}

function dropReads(fn: GradFn): void {
  for (const t of fn.reads) {
    t.readers--;
    if (t.readers === 0 && t.releasePending) t.dispose();
  }
  fn.reads = [];
}

/** Reverse-mode sweep from `root`, accumulating into leaf `.grad`s. */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error(`backward: ${root.describe()} does not require grad and has no graph (was it computed under noGrad, or from frozen tensors only?)`);
  }
  if (!grad && root.size !== 1) {
    throw new Error(`backward: a gradient can be implied only for a scalar output, got shape ${fmt(root.shape)}; pass one of that shape`);
  }
  if (grad && !shapesEqual(grad.shape, root.shape)) {
    throw new Error(`backward: gradient shape ${fmt(grad.shape)} does not match output shape ${fmt(root.shape)}`);
  }
  noGrad(() => sweep(root, grad));
}

function sweep(root: Tensor, grad: Tensor | undefined): void {
  const order = topoSort(root);
  const grads = new Map<Tensor, Tensor>();
  const owned = new Set<Tensor>();
  const seed = grad ?? ones(root.shape, { backend: root.backend.name });
  if (!grad) owned.add(seed);
  grads.set(root, seed);
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    const dy = grads.get(t);
    if (!dy) continue;
    grads.delete(t);
    if (!t.gradFn) {
      accumulateLeaf(t, dy, owned.has(dy));
      continue;
    }
    const fn = t.gradFn;
    if (!fn.backward) {
      throw new Error(`backward: trying to backward through the graph a second time (the node of ${fn.op} was freed by the first backward())`);
    }
    const thunks = fn.backward(dy);
    fn.backward = null;
    fn.inputs.forEach((input, k) => {
      const thunk = thunks[k];
      if (!thunk || !input.requiresGrad) return;
      let g = thunk();
      // A fresh handle, so that each gradient can be disposed on its own.
      if (g === dy) g = shareStorage(dy, dy.shape);
      if (!shapesEqual(g.shape, input.shape)) {
        const reduced = sumTo(g, input.shape);
        g.dispose();
        g = reduced;
      }
      if (!shapesEqual(g.shape, input.shape)) {
        throw new Error(`backward: ${fn.op} produced a gradient of shape ${fmt(g.shape)} for an input of shape ${fmt(input.shape)}`);
      }
      owned.add(g);
      const prev = grads.get(input);
      if (prev) {
        const sum = add(prev, g);
        if (owned.has(prev)) prev.dispose();
        if (owned.has(g)) g.dispose();
        owned.add(sum);
        grads.set(input, sum);
      } else {
        grads.set(input, g);
      }
    });
    if (owned.has(dy)) dy.dispose();
    dropReads(fn);
  }
}

function accumulateLeaf(t: Tensor, g: Tensor, owned: boolean): void {
  // A leaf's gradient must outlive any tidy scope and never alias another tensor.
  const own = owned ? g : g.clone();
  if (t.grad) {
    const sum = add(t.grad, own);
    t.grad.dispose();
    own.dispose();
    t.grad = keep(sum);
  } else {
    t.grad = keep(own);
  }
}

function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, k] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (k < inputs.length) {
      top[1]++;
      const next = inputs[k];
      if (next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}
