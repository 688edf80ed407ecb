import { attach, forwardScope } from '../autograd.ts';
import { runKernel } from '../engine.ts';
import { fmt, normalizeAxis, sizeOf, stridesOf, type Shape } from '../shape.ts';
import { shareStorage, type Tensor } from '../tensor.ts';
import { backendOf, result } from './util.ts';

function resolveShape(op: string, x: Tensor, shape: readonly number[]): number[] {
  const out = [...shape];
  const unknown = out.indexOf(-1);
  if (out.some((d, i) => !Number.isInteger(d) || d < -1 || (d === -1 && i !== unknown))) {
    throw new Error(`${op}: invalid target shape ${fmt(shape)} (at most one -1, others >= 0)`);
  }
  if (unknown >= 0) {
    const known = sizeOf(out.filter((_, i) => i !== unknown));
    if (known === 0 || x.size % known !== 0) {
      throw new Error(`${op}: cannot infer -1 in ${fmt(shape)} for ${x.size} elements of shape ${fmt(x.shape)}`);
    }
    out[unknown] = x.size / known;
  }
  if (sizeOf(out) !== x.size) {
    throw new Error(`${op}: cannot reshape ${fmt(x.shape)} (${x.size} elements) to ${fmt(shape)}`);
  }
  return out;
}

/** Same values, new shape; shares storage (a view). `reshape(x, [2, -1])` */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const target = resolveShape('reshape', x, shape);
  const y = shareStorage(x, target);
  return attach('reshape', y, [x], (dy) => [() => reshape(dy, x.shape)], []);
}

/** torch.view: identical to reshape here (every tensor is contiguous). */
export function view(x: Tensor, shape: readonly number[]): Tensor {
  resolveShape('view', x, shape);
  return reshape(x, shape);
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normalizeAxis('unsqueeze', axis, x.rank + 1);
  const shape = [...x.shape];
  shape.splice(a, 0, 1);
  return reshape(x, shape);
}

function stridedRaw(x: Tensor, shape: Shape, strides: readonly number[], offset: number): Tensor {
  const b = x.backend;
  return result(b, runKernel(b, 'strided', shape, { inputs: { x: x.data_ }, attrs: { outShape: shape, strides, offset } }), shape, x.dtype);
}

/** torch.permute: output axis i is input axis perm[i]. `permute(x, [0, 2, 1, 3])` */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.rank) {
    throw new Error(`permute: perm ${JSON.stringify(perm)} has ${perm.length} axes but the tensor ${fmt(x.shape)} has ${x.rank}`);
  }
  const p = perm.map((a) => normalizeAxis('permute', a, x.rank));
  if (new Set(p).size !== p.length) throw new Error(`permute: perm ${JSON.stringify(perm)} repeats an axis`);
  const inStrides = stridesOf(x.shape);
  const shape = p.map((a) => x.shape[a]);
  const y = stridedRaw(x, shape, p.map((a) => inStrides[a]), 0);
  const inverse = new Array<number>(p.length);
  p.forEach((a, i) => (inverse[a] = i));
  return attach('permute', y, [x], (dy) => [() => permute(dy, inverse)], []);
}

/** Swaps two axes: `transpose(x, -2, -1)` */
export function transpose(x: Tensor, axis0 = -2, axis1 = -1): Tensor {
  const a = normalizeAxis('transpose', axis0, x.rank);
  const c = normalizeAxis('transpose', axis1, x.rank);
  const perm = Array.from({ length: x.rank }, (_, i) => i);
  perm[a] = c;
  perm[c] = a;
  return permute(x, perm);
}

export interface SliceSpec {
  axes: readonly number[];
  starts: readonly number[];
  ends: readonly number[];
  steps?: readonly number[];
}

/**
 * ONNX-style slice with Python semantics (negative start/end from the end,
 * end exclusive, step >= 1): `slice(x, { axes: [1], starts: [0], ends: [-1] })`
 */
export function slice(x: Tensor, spec: SliceSpec): Tensor {
  const { axes, starts, ends } = spec;
  const steps = spec.steps ?? axes.map(() => 1);
  if (starts.length !== axes.length || ends.length !== axes.length || steps.length !== axes.length) {
    throw new Error(`slice: axes, starts, ends and steps must have one entry per axis (got ${axes.length}, ${starts.length}, ${ends.length}, ${steps.length})`);
  }
  const shape = [...x.shape];
  const inStrides = stridesOf(x.shape);
  const strides = [...inStrides];
  let offset = 0;
  const seen = new Set<number>();
  axes.forEach((axis, i) => {
    const a = normalizeAxis('slice', axis, x.rank);
    if (seen.has(a)) throw new Error(`slice: axis ${axis} listed twice`);
    seen.add(a);
    const step = steps[i];
    if (!Number.isInteger(step) || step < 1) throw new Error(`slice: step ${step} on axis ${axis} must be an integer >= 1`);
    const n = x.shape[a];
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + n : v, 0), n);
    const start = clamp(starts[i]);
    const end = clamp(ends[i]);
    shape[a] = Math.max(0, Math.ceil((end - start) / step));
    offset += start * inStrides[a];
    strides[a] = inStrides[a] * step;
  });
  const y = stridedRaw(x, shape, strides, offset);
  return attach('slice', y, [x], (dy) => [
    () => {
      const b = dy.backend;
      return result(b, runKernel(b, 'stridedAdd', x.shape, {
        inputs: { dy: dy.data_ }, attrs: { dyShape: dy.shape, strides, offset, outSize: x.size },
      }), x.shape);
    },
  ], []);
}

/** `length` entries from `start` along one axis. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  return slice(x, { axes: [axis], starts: [start], ends: [start + length] });
}

/** torch.cat: `concat([a, b], -1)` */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error('concat: needs at least one tensor');
  const b = backendOf('concat', ...xs);
  const rank = xs[0].rank;
  const a = normalizeAxis('concat', axis, rank);
  const shape = [...xs[0].shape];
  shape[a] = 0;
  for (const t of xs) {
    const ok = t.rank === rank && t.dtype === xs[0].dtype && t.shape.every((d, i) => i === a || d === xs[0].shape[i]);
    if (!ok) throw new Error(`concat: shapes ${xs.map((u) => fmt(u.shape)).join(', ')} do not match off axis ${axis}`);
    shape[a] += t.shape[a];
  }
  const data = runKernel(b, 'concat', shape, {
    inputs: { xs: xs.map((t) => t.data_) }, attrs: { shapes: xs.map((t) => t.shape), axis: a, outShape: shape },
  });
  const y = result(b, data, shape, xs[0].dtype);
  let start = 0;
  const offsets = xs.map((t) => {
    const s = start;
    start += t.shape[a];
    return s;
  });
  return attach('concat', y, xs, (dy) => xs.map((t, i) => () => narrow(dy, a, offsets[i], t.shape[a])), []);
}

/** torch.split: by a section size or a list of sizes. `split(x, [2, 3], 1)` */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const a = normalizeAxis('split', axis, x.rank);
  const n = x.shape[a];
  let list: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes < 1) throw new Error(`split: section size ${sizes} must be a positive integer`);
    list = [];
    for (let s = 0; s < n; s += sizes) list.push(Math.min(sizes, n - s));
  } else {
    list = [...sizes];
    const total = list.reduce((p, q) => p + q, 0);
    if (total !== n || list.some((s) => !Number.isInteger(s) || s < 0)) {
      throw new Error(`split: sizes ${JSON.stringify(sizes)} must be non-negative and sum to ${n} (axis ${axis} of ${fmt(x.shape)})`);
    }
  }
  let start = 0;
  return list.map((len) => {
    const piece = narrow(x, a, start, len);
    start += len;
    return piece;
  });
}

/** torch.stack: joins same-shape tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error('stack: needs at least one tensor');
  for (const t of xs) {
    if (fmt(t.shape) !== fmt(xs[0].shape)) {
      throw new Error(`stack: all shapes must match, got ${xs.map((u) => fmt(u.shape)).join(', ')}`);
    }
  }
  const a = normalizeAxis('stack', axis, xs[0].rank + 1);
  // concat's backward reads only the parts' shapes: the scope frees them.
  return forwardScope(() => concat(xs.map((t) => unsqueeze(t, a)), a));
}

/** torch.expand: repeats size-1 axes and adds leading axes; -1 keeps a size. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.rank;
  if (lead < 0) throw new Error(`expand: target ${fmt(shape)} has fewer axes than ${fmt(x.shape)}`);
  const target = shape.map((d, i) => {
    const own = i >= lead ? x.shape[i - lead] : undefined;
    if (d === -1) {
      if (own === undefined) throw new Error(`expand: -1 is not allowed for the new leading axis ${i} in ${fmt(shape)}`);
      return own;
    }
    if (own !== undefined && own !== d && own !== 1) {
      throw new Error(`expand: cannot expand ${fmt(x.shape)} to ${fmt(shape)} (axis ${i}: ${own} -> ${d})`);
    }
    return d;
  });
  const own = stridesOf(x.shape);
  const strides = target.map((d, i) => (i < lead || x.shape[i - lead] === 1 ? 0 : own[i - lead]));
  const y = stridedRaw(x, target, strides, 0);
  return attach('expand', y, [x], (dy) => [() => dy], []);
}
