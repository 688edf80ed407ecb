import { runKernel } from './engine.ts';
import { fmt, shapesEqual, unbroadcastAxes, type Shape } from './shape.ts';
import { Tensor, collectScope, keep, makeTensor, shareStorage, type GradFn, type GradThunk } from './tensor.ts';

// The tape sits below the ops: it records nodes, keeps saved tensors alive until
// their backward has run, and sums/un-broadcasts gradients with kernels directly.
export type { GradFn, GradThunk };

/** How many pending backward nodes read a tensor, and whether it is freed once none does. */
interface Hold {
  readers: number;
  releasePending: boolean;
}

const holds = new WeakMap<Tensor, Hold>();
let gradEnabled = true;

function holdOf(t: Tensor): Hold {
  let h = holds.get(t);
  if (!h) {
    h = { readers: 0, releasePending: false };
    holds.set(t, h);
  }
  return h;
}

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

/** Runs fn recording a graph even inside `noGrad` (recomputation reruns a forward during backward). */
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
  const saved = reads ? reads.filter((t): t is Tensor => !!t) : [...inputs, out];
  return recordNode(op, out, inputs, backward, saved);
}

/**
 * Records a node whatever its inputs need (a recomputed block whose parameters
 * train although no input requires a gradient). Prefer `attach`.
 */
export function recordNode(
  op: string,
  out: Tensor,
  inputs: readonly Tensor[],
  backward: (dy: Tensor) => GradThunk[],
  saved: readonly Tensor[],
): Tensor {
  const list = [...saved];
  for (const t of list) holdOf(t).readers++;
  out.requiresGrad = true;
  out.gradFn = { op, inputs, backward, saved: list };
  return out;
}

/**
 * A gradient thunk that can add into the gradient summed so far: `fn(null)` alone,
 * `fn(acc)` = acc + the gradient, in one kernel (see GradThunk).
 */
export function accumulating(fn: (acc: Tensor | null) => Tensor): NonNullable<GradThunk> {
  return Object.assign(() => fn(null), { into: (acc: Tensor) => fn(acc) });
}

/** Adds tensors to what `node`'s backward holds alive (no-op when it records no graph). */
export function saveForBackward(node: Tensor, ...ts: Tensor[]): void {
  const fn = node.gradFn;
  if (!fn?.backward) return;
  for (const t of ts) {
    if (fn.saved.includes(t)) continue;
    fn.saved.push(t);
    holdOf(t).readers++;
  }
}

/**
 * Frees an intermediate as soon as no pending backward reads it: now, or when
 * the last such backward has run. For tensors a module made and never hands
 * out, like PyTorch freeing what autograd did not save.
 * @example const h = fc1.forward(x); const y = gelu(h); release(h);
 */
export function release(...ts: Tensor[]): void {
  for (const t of ts) {
    const h = holds.get(t);
    if (!h || h.readers === 0) t.dispose();
    else h.releasePending = true;
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
 * Runs fn (a module's forward: `Module` wraps every forward in one) so that
 * only what it returns and what a backward saved outlive it: every other
 * tensor it made is released at its end, as if each had been handed to
 * `release`. Tensors taken out with `keep()` (a KV cache, a table) stay.
 * @example const y = forwardScope(() => fc2.forward(gelu(fc1.forward(x))));
 */
export function forwardScope<T>(fn: () => T): T {
  return collectScope(fn, (made, returned) => {
    for (const t of made) if (!returned.has(t)) release(t);
  });
}

/**
 * Disposes internal tensors `ts` (made by an op, never returned to the user)
 * once `node`'s backward has read them, or at once when `node` records no graph.
 */
export function releaseAfterBackward(node: Tensor, ...ts: Tensor[]): void {
  saveForBackward(node, ...ts);
  release(...ts);
}

function dropSaved(fn: GradFn): void {
  for (const t of fn.saved) {
    const h = holdOf(t);
    h.readers--;
    if (h.readers === 0 && h.releasePending) t.dispose();
  }
  fn.saved = [];
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

Tensor.prototype.backward = function (grad) {
  backward(this, grad);
};

function sweep(root: Tensor, grad: Tensor | undefined): void {
  const order = topoSort(root);
  const grads = new Map<Tensor, Tensor>();
  const owned = new Set<Tensor>();
  const seed = grad ?? filled(root, 1);
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
      const prev = grads.get(input);
      const into = prev && thunk.into;
      // A thunk's temporaries are freed as it returns (nothing is saved under the sweep's noGrad).
      let g = into ? forwardScope(() => into(prev)) : forwardScope(thunk);
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
      if (into) {
        if (owned.has(prev)) prev.dispose();
        grads.set(input, g);
      } else if (prev) {
        const total = addSame(prev, g);
        if (owned.has(prev)) prev.dispose();
        if (owned.has(g)) g.dispose();
        owned.add(total);
        grads.set(input, total);
      } else {
        grads.set(input, g);
      }
    });
    if (owned.has(dy)) dy.dispose();
    dropSaved(fn);
  }
}

function accumulateLeaf(t: Tensor, g: Tensor, owned: boolean): void {
  // A leaf's gradient must outlive any tidy scope and never alias another tensor.
  const own = owned ? g : copyOf(g);
  if (t.grad) {
    const total = addSame(t.grad, own);
    t.grad.dispose();
    own.dispose();
    t.grad = keep(total);
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

// Gradient arithmetic on kernels (float32, no graph): what the tape needs without the op layer.

function filled(like: Tensor, value: number): Tensor {
  const b = like.backend;
  return makeTensor(b, b.hasStorage ? b.fill({ inputs: {}, attrs: { size: like.size, value, dtype: 'float32' } }) : null, like.shape, 'float32');
}

function copyOf(t: Tensor): Tensor {
  const b = t.backend;
  return makeTensor(b, runKernel(b, 'cast', t.shape, { inputs: { x: t.data_ }, attrs: { size: t.size, to: t.dtype } }), t.shape, t.dtype);
}

/** a + b for two tensors of one shape. */
function addSame(a: Tensor, b: Tensor): Tensor {
  const be = a.backend;
  if (b.backend !== be) throw new Error(`backward: gradients on different backends (${be.name}, ${b.backend.name}) for one tensor`);
  return makeTensor(be, runKernel(be, 'binary', a.shape, {
    inputs: { a: a.data_, b: b.data_ }, attrs: { op: 'add', aShape: a.shape, bShape: b.shape, outShape: a.shape },
  }), a.shape, 'float32');
}

/** Sums a broadcast gradient down to `shape` (the tape's one un-broadcast). */
function sumTo(g: Tensor, shape: Shape): Tensor {
  const axes = unbroadcastAxes(g.shape, shape);
  if (axes.length === 0) return shareStorage(g, shape);
  const b = g.backend;
  const kept = g.shape.filter((_, i) => !axes.includes(i));
  return makeTensor(b, runKernel(b, 'reduce', kept, { inputs: { x: g.data_ }, attrs: { op: 'sum', shape: g.shape, axes } }), shape, 'float32');
}
