/** Shape helpers shared by ops and backends. Shapes are row-major. */

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function stridesOf(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function fmt(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** NumPy broadcasting of any number of shapes; throws naming the op. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i];
      if (d === out[o] || d === 1) continue;
      if (out[o] === 1) out[o] = d;
      else throw new Error(`${op}: shapes ${shapes.map(fmt).join(' and ')} cannot be broadcast together`);
    }
  }
  return out;
}

/** Strides of `shape` viewed inside the broadcast shape `out` (0 on broadcast axes). */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const own = stridesOf(shape);
  const res = new Array<number>(out.length).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const o = out.length - shape.length + i;
    res[o] = shape[i] === 1 ? 0 : own[i];
  }
  return res;
}

export function normalizeAxis(op: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) {
    throw new Error(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** Sorted, de-duplicated, non-negative axes; `null`/`undefined` means all axes. */
export function normalizeAxes(op: string, axis: number | readonly number[] | null | undefined, rank: number): number[] {
  if (axis === null || axis === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axis === 'number' ? [axis] : [...axis];
  const out = list.map((a) => normalizeAxis(op, a, rank));
  if (new Set(out).size !== out.length) throw new Error(`${op}: repeated axis in ${JSON.stringify(axis)}`);
  return out.sort((x, y) => x - y);
}

export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${op}: invalid shape ${fmt(shape)}`);
  }
}

/** The axes of `from` that sum away to un-broadcast it to `to` (leading axes, and size-1 axes of `to`). */
export function unbroadcastAxes(from: Shape, to: Shape): number[] {
  const lead = from.length - to.length;
  if (lead < 0) throw new Error(`sumTo: cannot reduce ${fmt(from)} to the larger rank of ${fmt(to)}`);
  const axes: number[] = [];
  for (let i = 0; i < from.length; i++) {
    if (i < lead) axes.push(i);
    else if (to[i - lead] === 1 && from[i] !== 1) axes.push(i);
    else if (to[i - lead] !== from[i]) {
      throw new Error(`sumTo: gradient of shape ${fmt(from)} does not broadcast from ${fmt(to)}`);
    }
  }
  return axes;
}
