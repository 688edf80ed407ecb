import { isHalfDtype, type BinaryOp, type UnaryOp } from '../../backend.ts';
import { broadcastStrides, sizeOf, type Shape } from '../../shape.ts';
import { forEachRow, type Args, type Arr, type CpuContext, type FArr } from './arrays.ts';
import { geluGradWasm, geluWasm } from './wasm-activations.ts';
import { gelu, geluGrad, geluInto } from './gelu.ts';
import { BF16Array, isHalf, toHalf, widen } from './half.ts';
import * as nn from './nn-kernels.ts';
import { runRows } from './rows.ts';

/** The cpu elementwise kernels: fill, cast, unary (and grad), affine, powScalar, binary, where. */

/** The binary ops the row kernels run (binaryElements' op codes). */
const ARITH_CODES: Partial<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };

/** Whether `inner` equals the trailing axes of `outer` (ignoring leading 1s). */
function isSuffix(inner: Shape, outer: Shape): boolean {
  let i = inner.length - 1;
  let o = outer.length - 1;
  for (; i >= 0; i--, o--) {
    if (o < 0) return inner[i] === 1;
    if (inner[i] !== outer[o]) return i >= 0 && inner.slice(0, i + 1).every((d) => d === 1);
  }
  return true;
}

function sigmoid(x: number): number {
  // NOTE: stable for large |x|: never exponentiate a large positive number.
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

const unaryFns: Record<UnaryOp, (x: number) => number> = {
  neg: (x) => -x,
  sqrt: Math.sqrt,
  exp: Math.exp,
  log: Math.log,
  tanh: Math.tanh,
  sigmoid,
  // NOTE: NaN propagates, as in PyTorch (a plain `x > 0 ? x : 0` maps NaN to 0).
  relu: (x) => (x > 0 || x !== x ? x : 0),
  gelu,
  silu: (x) => x * sigmoid(x),
};

/** dy * f'(.), given the input x or the output y. */
const unaryGradFns: Record<UnaryOp, (x: number, y: number, dy: number) => number> = {
  neg: (_x, _y, dy) => -dy,
  sqrt: (_x, y, dy) => dy / (2 * y),
  exp: (_x, y, dy) => dy * y,
  log: (x, _y, dy) => dy / x,
  tanh: (_x, y, dy) => dy * (1 - y * y),
  sigmoid: (_x, y, dy) => dy * y * (1 - y),
  // PyTorch's threshold_backward: the gradient passes unless x <= 0 (so it passes at NaN).
  relu: (x, _y, dy) => (x <= 0 ? 0 : dy),
  gelu: (x, _y, dy) => dy * geluGrad(x),
  silu: (x, _y, dy) => {
    const s = sigmoid(x);
    return dy * s * (1 + x * (1 - s));
  },
};

const binaryFns: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: Math.pow,
  // NaN in either operand gives NaN, as torch.maximum.
  maximum: (a, b) => (a >= b || a !== a ? a : b),
  eq: (a, b) => (a === b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
};

export function fill(ctx: CpuContext, { attrs: { size, value, dtype } }: Args<'fill'>): Arr {
  if (isHalfDtype(dtype)) {
    const half = ctx.allocHalf(dtype, size);
    if (value !== 0) half.fill(toHalf(dtype, [value])[0]);
    return half;
  }
  const out = ctx.allocDtype(dtype, size);
  if (value !== 0) out.fill(value);
  return out;
}

export function cast(ctx: CpuContext, { inputs: { x }, attrs: { size, to } }: Args<'cast', Arr>): Arr {
  if (isHalfDtype(to)) {
    if (isHalf(x) && (to === 'bfloat16') === x instanceof BF16Array) return x.slice(0, size);
    return toHalf(to, isHalf(x) ? widen(x, size) : x, size, ctx.allocHalf(to, size));
  }
  if (isHalf(x)) {
    const wide = widen(x, size);
    return to === 'float32' ? (ctx.F === Float32Array ? wide : Float64Array.from(wide)) : cast(ctx, { inputs: { x: wide }, attrs: { size, to } });
  }
  const out = ctx.allocDtype(to, size);
  if (to === 'bool') for (let i = 0; i < size; i++) out[i] = x[i] !== 0 ? 1 : 0;
  else if (to === 'float32' || x instanceof Int32Array) out.set(x.subarray(0, size));
  else for (let i = 0; i < size; i++) out[i] = Math.trunc(x[i]);
  return out;
}

export function unary(ctx: CpuContext, { inputs: { x }, attrs: { op, size } }: Args<'unary'>): FArr {
  const out = ctx.alloc(size);
  // The hot activations get loops of their own: a call through the table per element is several times slower.
  if (op === 'gelu') {
    if (x instanceof Float32Array && out instanceof Float32Array && geluWasm(x.subarray(0, size), out)) return out;
    geluInto(x, out, size);
    return out;
  }
  if (op === 'silu') {
    nn.siluInto(x, out, size);
    return out;
  }
  const f = unaryFns[op];
  for (let i = 0; i < size; i++) out[i] = f(x[i]);
  return out;
}

export function unaryGrad(ctx: CpuContext, { inputs: { x, y, dy }, attrs: { op, size } }: Args<'unaryGrad'>): FArr {
  const out = ctx.alloc(size);
  if (op === 'gelu' && x) {
    if (x instanceof Float32Array && dy instanceof Float32Array && out instanceof Float32Array
      && geluGradWasm(x.subarray(0, size), dy, out)) return out;
    for (let i = 0; i < size; i++) out[i] = dy[i] * geluGrad(x[i]);
    return out;
  }
  if (op === 'silu' && x) {
    nn.siluGradInto(x, dy, out, size);
    return out;
  }
  const f = unaryGradFns[op];
  for (let i = 0; i < size; i++) out[i] = f(x ? x[i] : 0, y ? y[i] : 0, dy[i]);
  return out;
}

export function affine(ctx: CpuContext, { inputs: { x }, attrs: { size, scale, shift } }: Args<'affine'>): FArr {
  const out = ctx.alloc(size);
  for (let i = 0; i < size; i++) out[i] = x[i] * scale + shift;
  return out;
}

export function powScalar(ctx: CpuContext, { inputs: { x }, attrs: { size, exponent } }: Args<'powScalar'>): FArr {
  const out = ctx.alloc(size);
  if (exponent === 2) for (let i = 0; i < size; i++) out[i] = x[i] * x[i];
  else for (let i = 0; i < size; i++) out[i] = Math.pow(x[i], exponent);
  return out;
}

export function binary(ctx: CpuContext, { inputs: { a, b }, attrs: { op, aShape, bShape, outShape } }: Args<'binary'>): FArr {
  const n = sizeOf(outShape);
  const out = ctx.alloc(n);
  const f = binaryFns[op];
  const an = sizeOf(aShape);
  const bn = sizeOf(bShape);
  const code = ARITH_CODES[op];
  if (an === n && bn === n) {
    if (code !== undefined) runRows(op, 'binaryElements', [a, b, out], [code], n, n);
    else for (let i = 0; i < n; i++) out[i] = f(a[i], b[i]);
    return out;
  }
  if (bn === 1 && an === n) {
    const bv = b[0];
    for (let i = 0; i < n; i++) out[i] = f(a[i], bv);
    return out;
  }
  if (an === n && isSuffix(bShape, outShape)) {
    // A bias-like operand repeated over leading axes: [N, C] + [C].
    if (code !== undefined) {
      runRows(op, 'binaryRowsBias', [a, b, out], [bn, code], n / bn, n);
      return out;
    }
    for (let o = 0; o < n; o += bn) for (let c = 0; c < bn; c++) out[o + c] = f(a[o + c], b[c]);
    return out;
  }
  const sa = broadcastStrides(aShape, outShape);
  const sb = broadcastStrides(bShape, outShape);
  const cols = outShape[outShape.length - 1] ?? 1;
  const ca = sa[sa.length - 1] ?? 0;
  const cb = sb[sb.length - 1] ?? 0;
  forEachRow(outShape, [sa, sb], (row, [oa, ob]) => {
    const o = row * cols;
    if (op === 'add') for (let c = 0; c < cols; c++) out[o + c] = a[oa + c * ca] + b[ob + c * cb];
    else if (op === 'mul') for (let c = 0; c < cols; c++) out[o + c] = a[oa + c * ca] * b[ob + c * cb];
    else for (let c = 0; c < cols; c++) out[o + c] = f(a[oa + c * ca], b[ob + c * cb]);
  });
  return out;
}

export function where(ctx: CpuContext, { inputs: { cond, a, b }, attrs: { cShape, aShape, bShape, outShape } }: Args<'where'>): FArr {
  const out = ctx.alloc(sizeOf(outShape));
  const ss = [cShape, aShape, bShape].map((s) => broadcastStrides(s, outShape));
  const cols = outShape[outShape.length - 1] ?? 1;
  const last = ss.map((s) => s[s.length - 1] ?? 0);
  forEachRow(outShape, ss, (row, [oc, oa, ob]) => {
    const o = row * cols;
    for (let c = 0; c < cols; c++) out[o + c] = cond[oc + c * last[0]] ? a[oa + c * last[1]] : b[ob + c * last[2]];
  });
  return out;
}
