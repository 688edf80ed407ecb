import type { BinaryOp, LowRank, ReduceOp, UnaryOp } from '../../backend.ts';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../../shape.ts';
import { CodeGen, flt, kernelSource, powCode, sigmoidCode, tanhCode } from './codegen.ts';
import type { RawGl } from './gpujs.ts';

/**
 * A generated kernel: source (generic in its sizes), flat output size,
 * longest loop, and the values of its integer and float uniforms.
 */
export interface KernelSpec {
  /** Kernel family, for dispatch accounting. */
  name: string;
  src: string;
  size: number;
  loop: number;
  ints: readonly number[];
  floats: readonly number[];
  /** GL modes: the kernel in GLSL (src then only declares the arguments). */
  raw?: RawGl;
  /** GL modes: named functions src calls whose values are further outputs of the dispatch. */
  subKernels?: readonly string[];
}

const T = 'this.thread.x';
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU's tanh argument u = sqrt(2/pi) (x + 0.044715 x^3), the one place the gpu backend writes it. */
function geluArg(x: string): string {
  return `${flt(SQRT_2_OVER_PI)} * (${x} + 0.044715 * ${x} * ${x} * ${x})`;
}

/** du/dx of `geluArg`. */
function geluArgGrad(x: string): string {
  return `${flt(SQRT_2_OVER_PI)} * (1 + 3 * 0.044715 * ${x} * ${x})`;
}

function spec(name: string, g: CodeGen, args: readonly string[], body: string, size: number, loop = 1): KernelSpec {
  return { name, src: kernelSource([...args, ...g.uniformNames()], body), size, loop, ints: [...g.ints], floats: [...g.floats] };
}

/** y = f(x) for a unary op; returns code that declares `y`. */
function unaryCode(g: CodeGen, op: UnaryOp, x: string, y: string): string {
  switch (op) {
    case 'neg': return `let ${y} = -${x};\n`;
    case 'sqrt': return `let ${y} = Math.sqrt(${x});\n`;
    case 'exp': return `let ${y} = Math.exp(${x});\n`;
    case 'log': return `let ${y} = Math.log(${x});\n`;
    case 'tanh': {
      const [c, t] = tanhCode(g, x);
      return `${c}let ${y} = ${t};\n`;
    }
    case 'sigmoid': {
      const [c, s] = sigmoidCode(g, x);
      return `${c}let ${y} = ${s};\n`;
    }
    // NOTE: NaN propagates (x != x) as in PyTorch; best effort where a GLSL compiler folds it.
    case 'relu': return `let ${y} = 0;\nif (${x} > 0 || ${x} != ${x}) { ${y} = ${x}; }\n`;
    case 'gelu': {
      // NOTE: tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
      const u = g.fresh('u');
      const [c, t] = tanhCode(g, u);
      return `let ${u} = ${geluArg(x)};\n${c}let ${y} = 0.5 * ${x} * (1 + ${t});\n`;
    }
    case 'silu': {
      const [c, s] = sigmoidCode(g, x);
      return `${c}let ${y} = ${x} * ${s};\n`;
    }
  }
}

export function unary(g: CodeGen, op: UnaryOp, size: number): KernelSpec {
  return spec('unary', g, ['x'], `let v = x[${T}];\n${unaryCode(g, op, 'v', 'y')}return y;\n`, size);
}

/** dy * f'(.) from x and/or y; `which` says what is passed. */
export function unaryGrad(g: CodeGen, op: UnaryOp, hasX: boolean, hasY: boolean, size: number): KernelSpec {
  const args = [...(hasX ? ['x'] : []), ...(hasY ? ['y'] : []), 'dy'];
  let body = `let d = dy[${T}];\n`;
  if (hasX) body += `let a = x[${T}];\n`;
  if (hasY) body += `let b = y[${T}];\n`;
  const need = (v: boolean, what: string): void => {
    if (!v) throw new Error(`gpu backend: unaryGrad '${op}' needs ${what}`);
  };
  switch (op) {
    case 'neg': body += 'return -d;\n'; break;
    case 'sqrt': need(hasY, 'y'); body += 'return d / (2 * b);\n'; break;
    case 'exp': need(hasY, 'y'); body += 'return d * b;\n'; break;
    case 'log': need(hasX, 'x'); body += 'return d / a;\n'; break;
    case 'tanh': need(hasY, 'y'); body += 'return d * (1 - b * b);\n'; break;
    case 'sigmoid': need(hasY, 'y'); body += 'return d * b * (1 - b);\n'; break;
    case 'relu': need(hasX, 'x'); body += 'if (a <= 0) { return 0; }\nreturn d;\n'; break;
    case 'gelu': {
      need(hasX, 'x');
      // NOTE: derivative of 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
      const [c, t] = tanhCode(g, 'u');
      body += `let u = ${geluArg('a')};\n${c}`;
      body += `let du = ${geluArgGrad('a')};\n`;
      body += `return d * (0.5 * (1 + ${t}) + 0.5 * a * (1 - ${t} * ${t}) * du);\n`;
      break;
    }
    case 'silu': {
      need(hasX, 'x');
      const [c, s] = sigmoidCode(g, 'a');
      body += `${c}return d * ${s} * (1 + a * (1 - ${s}));\n`;
      break;
    }
  }
  return spec('unaryGrad', g, args, body, size);
}

export function copy(g: CodeGen, size: number): KernelSpec {
  return spec('copy', g, ['x'], `return x[${T}];\n`, size);
}

/** Fills with a value. */
export function fill(g: CodeGen, size: number, value: number): KernelSpec {
  return spec('fill', g, [], `return ${g.f(value)};\n`, size);
}

export function truncate(g: CodeGen, size: number): KernelSpec {
  return spec('truncate', g, ['x'], `let v = x[${T}];\nif (v < 0) { return -Math.floor(-v); }\nreturn Math.floor(v);\n`, size);
}

/** x * scale + shift. */
export function affine(g: CodeGen, size: number, scale: number, shift: number): KernelSpec {
  return spec('affine', g, ['x'], `return x[${T}] * ${g.f(scale)} + ${g.f(shift)};\n`, size);
}

/** x ** exponent; squares are special-cased. */
export function powScalar(g: CodeGen, size: number, exponent: number): KernelSpec {
  if (exponent === 2) return spec('powScalar', g, ['x'], `let v = x[${T}];\nreturn v * v;\n`, size);
  const [c, y] = powCode(g, 'v', 'e');
  return spec('powScalar', g, ['x'], `let v = x[${T}];\nlet e = ${g.f(exponent)};\n${c}return ${y};\n`, size);
}

function binaryCode(g: CodeGen, op: BinaryOp, a: string, b: string): string {
  switch (op) {
    case 'add': return `return ${a} + ${b};\n`;
    case 'sub': return `return ${a} - ${b};\n`;
    case 'mul': return `return ${a} * ${b};\n`;
    case 'div': return `return ${a} / ${b};\n`;
    case 'pow': {
      const [c, y] = powCode(g, a, b);
      return `${c}return ${y};\n`;
    }
    case 'maximum': return `if (${a} >= ${b} || ${a} != ${a}) { return ${a}; }\nreturn ${b};\n`;
    case 'eq': return `if (${a} == ${b}) { return 1; }\nreturn 0;\n`;
    case 'gt': return `if (${a} > ${b}) { return 1; }\nreturn 0;\n`;
  }
}

/** Reads of broadcast operands at the current output cell. */
function broadcastReads(g: CodeGen, names: readonly string[], shapes: readonly Shape[], outShape: Shape): string {
  const n = sizeOf(outShape);
  const simple = shapes.every((s) => sizeOf(s) === n || sizeOf(s) === 1);
  if (simple) {
    return names.map((nm, i) => `let ${nm}0 = ${nm}[${sizeOf(shapes[i]) === n ? T : '0'}];\n`).join('');
  }
  const { code, c } = g.coords(T, outShape);
  return code + names.map((nm, i) => `let ${nm}0 = ${nm}[${g.offset(c, broadcastStrides(shapes[i], outShape))}];\n`).join('');
}

export function binary(g: CodeGen, op: BinaryOp, aShape: Shape, bShape: Shape, outShape: Shape): KernelSpec {
  const body = broadcastReads(g, ['a', 'b'], [aShape, bShape], outShape) + binaryCode(g, op, 'a0', 'b0');
  return spec('binary', g, ['a', 'b'], body, sizeOf(outShape));
}

export function where(g: CodeGen, cShape: Shape, aShape: Shape, bShape: Shape, outShape: Shape): KernelSpec {
  const body = broadcastReads(g, ['c', 'a', 'b'], [cShape, aShape, bShape], outShape) + 'if (c0 != 0) { return a0; }\nreturn b0;\n';
  return spec('where', g, ['c', 'a', 'b'], body, sizeOf(outShape));
}

export function reduce(g: CodeGen, op: ReduceOp, shape: Shape, axes: readonly number[]): KernelSpec {
  const rank = shape.length;
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const keptShape = kept.map((i) => shape[i]);
  const redShape = axes.map((i) => shape[i]);
  const R = sizeOf(redShape);
  const st = stridesOf(shape);
  const init = op === 'sum' ? 'let acc = 0;\n' : 'let acc = -Infinity;\n';
  const accumulate = (v: string): string =>
    op === 'sum' ? `acc += ${v};\n` : `let w = ${v};\nif (w > acc || w != w) { acc = w; }\n`;
  const trailing = axes.every((a, i) => a === rank - axes.length + i);
  let body = init;
  if (trailing) {
    const base = R === 1 ? T : `${T} * ${g.d(R)}`;
    body += `for (let j = 0; j < ${g.d(R)}; j++) {\n${accumulate(`x[${base} + j]`)}}\n`;
  } else {
    const outer = g.coords(T, keptShape);
    body += outer.code;
    const inner = g.coords('j', redShape);
    const at = g.offset([...outer.c, ...inner.c], [...kept.map((i) => st[i]), ...axes.map((i) => st[i])]);
    body += `for (let j = 0; j < ${g.d(R)}; j++) {\n${inner.code}${accumulate(`x[${at}]`)}}\n`;
  }
  body += 'return acc;\n';
  return spec('reduce', g, ['x'], body, sizeOf(keptShape), R);
}

/** What a matmul adds to its product: a scale of the product (alpha) and a low-rank term. */
export interface MatmulExtras {
  alpha?: number;
  lowRank?: LowRank | null;
  /** An input of the output's shape added to it. */
  addend?: boolean;
  /** a read through GELU; the product times gelu'(at) (see the matmul kernel's contract). */
  aAct?: 'gelu' | null;
  gradOf?: 'gelu' | null;
}

export function matmul(
  g: CodeGen, aShape: Shape, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape, withBias = false,
  extras: MatmulExtras = {},
): KernelSpec {
  const r = outShape.length;
  const m = outShape[r - 2];
  const n = outShape[r - 1];
  const k = transA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  const aRows = aShape[aShape.length - 2];
  const aCols = aShape[aShape.length - 1];
  const bRows = bShape[bShape.length - 2];
  const bCols = bShape[bShape.length - 1];
  const [sAm, sAk] = transA ? [1, aCols] : [aCols, 1];
  const [sBk, sBn] = transB ? [1, bCols] : [bCols, 1];
  const batch = outShape.slice(0, -2);
  const aBatch = broadcastStrides(aShape.slice(0, -2), batch).map((s) => s * aRows * aCols);
  const bBatch = broadcastStrides(bShape.slice(0, -2), batch).map((s) => s * bRows * bCols);
  const { code, c } = g.coords(T, [...batch, m, n]);
  const nb = batch.length;
  const aAt = g.offset([...c.slice(0, nb), c[nb], 'p'], [...aBatch, sAm, sAk]);
  const bAt = g.offset([...c.slice(0, nb), c[nb + 1], 'p'], [...bBatch, sBn, sBk]);
  const scaled = extras.alpha !== undefined && extras.alpha !== 1;
  const init = withBias && !scaled ? `bias[${c[nb + 1]}]` : '0';
  const term = extras.aAct ? `let av = a[${aAt}];\n${unaryCode(g, 'gelu', 'av', 'ga')}acc += ga * b[${bAt}];\n` : `acc += a[${aAt}] * b[${bAt}];\n`;
  let body = `${code}let acc = ${init};\nfor (let p = 0; p < ${g.d(k)}; p++) {\n${term}}\n`;
  if (extras.gradOf) {
    // NOTE: derivative of 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), at x = at[i].
    const [c, t] = tanhCode(g, 'gu');
    body += `let gx = at[${T}];\nlet gu = ${geluArg('gx')};\n${c}acc = acc * (0.5 * (1 + ${t}) + 0.5 * gx * (1 - ${t} * ${t}) * ${geluArgGrad('gx')});\n`;
  }
  if (scaled) body += `acc = acc * ${g.f(extras.alpha!)}${withBias ? ` + bias[${c[nb + 1]}]` : ''};\n`;
  const low = extras.lowRank;
  if (low) {
    const hAt = g.offset([c[0], 'j'], [low.r, 1]);
    const wAt = g.offset([c[1], 'j'], low.transW ? [low.r, 1] : [1, n]);
    body += `let lr = 0;\nfor (let j = 0; j < ${g.d(low.r)}; j++) {\nlr += h[${hAt}] * w[${wAt}];\n}\nacc += ${g.f(low.scale)} * lr;\n`;
  }
  body += extras.addend ? 'return acc + addend[this.thread.x];\n' : 'return acc;\n';
  const args = ['a', 'b', ...(withBias ? ['bias'] : []), ...(low ? ['h', 'w'] : []), ...(extras.addend ? ['addend'] : []), ...(extras.gradOf ? ['at'] : [])];
  return spec('matmul', g, args, body, sizeOf(outShape), Math.max(k, low?.r ?? 0));
}

export function strided(g: CodeGen, outShape: Shape, strides: readonly number[], offset: number): KernelSpec {
  const { code, c } = g.coords(T, outShape);
  return spec('strided', g, ['x'], `${code}return x[${g.offset(c, strides, offset)}];\n`, sizeOf(outShape));
}

/**
 * Whether the positive strides, largest first, nest (each exceeds the largest
 * offset the smaller ones reach), so a flat offset decomposes greedily.
 */
export function stridesNest(dyShape: Shape, strides: readonly number[]): boolean {
  const axes = dyShape.map((_, i) => i).filter((i) => strides[i] !== 0 && dyShape[i] > 1);
  axes.sort((p, q) => strides[q] - strides[p]);
  let reach = 0;
  for (let i = axes.length - 1; i >= 0; i--) {
    const a = axes[i];
    if (strides[a] <= reach) return false;
    reach += (dyShape[a] - 1) * strides[a];
  }
  return true;
}

/** The adjoint of strided, gather-style: each output cell finds the dy cells that map to it. */
export function stridedAdd(
  g: CodeGen, dyShape: Shape, strides: readonly number[], offset: number, outSize: number,
): KernelSpec {
  const dyStrides = stridesOf(dyShape);
  const dySize = sizeOf(dyShape);
  if (!stridesNest(dyShape, strides)) {
    const { code, c } = g.coords('j', dyShape);
    const body =
      `let acc = 0;\nfor (let j = 0; j < ${g.d(dySize)}; j++) {\n${code}` +
      `if (${g.offset(c, strides, offset)} == ${T}) { acc += dy[j]; }\n}\nreturn acc;\n`;
    return spec('stridedAdd', g, ['dy'], body, outSize, dySize);
  }
  const moving = dyShape.map((_, i) => i).filter((i) => strides[i] !== 0 && dyShape[i] > 1);
  moving.sort((p, q) => strides[q] - strides[p]);
  const fixed = dyShape.map((_, i) => i).filter((i) => strides[i] === 0 && dyShape[i] > 1);
  let body = offset === 0 ? 'let ok = 1;\n' : `if (${T} < ${g.d(offset)}) { return 0; }\nlet ok = 1;\n`;
  const coord = new Map<number, string>();
  let cur = T;
  if (offset !== 0) {
    body += `let t0 = ${g.lin([[T, 1]], -offset)};\n`;
    cur = 't0';
  }
  for (const a of moving) {
    const q = g.fresh('q');
    const rr = g.fresh('r');
    body += g.divmod(q, rr, cur, strides[a]);
    body += `if (${q} >= ${g.d(dyShape[a])}) { ok = 0; }\n`;
    coord.set(a, q);
    cur = rr;
  }
  body += `if (${cur} != 0) { ok = 0; }\nif (ok == 0) { return 0; }\n`;
  const Z = sizeOf(fixed.map((a) => dyShape[a]));
  const inner = g.coords('z', fixed.map((a) => dyShape[a]));
  fixed.forEach((a, i) => coord.set(a, inner.c[i]));
  const names: string[] = [];
  const dyS: number[] = [];
  dyShape.forEach((d, a) => {
    const v = coord.get(a);
    if (v !== undefined) {
      names.push(v);
      dyS.push(dyStrides[a]);
    }
  });
  body += `let acc = 0;\nfor (let z = 0; z < ${g.d(Z)}; z++) {\n${inner.code}acc += dy[${g.offset(names, dyS)}];\n}\nreturn acc;\n`;
  return spec('stridedAdd', g, ['dy'], body, outSize, Z);
}

/** Up to a few pieces of a concat, over `acc` (the output so far) when `withAcc`. */
export function concatGroup(
  g: CodeGen, pieces: readonly { row: number; start: number }[], outShape: Shape, axis: number, withAcc: boolean,
): KernelSpec {
  const outRow = sizeOf(outShape.slice(axis));
  const o = g.fresh('o');
  const col = g.fresh('k');
  let body = g.divmod(o, col, T, outRow);
  const args: string[] = [];
  pieces.forEach((p, i) => {
    args.push(`x${i}`);
    body += `if (${col} >= ${g.d(p.start)} && ${col} < ${g.d(p.start + p.row)}) { return x${i}[${g.lin([[o, p.row], [col, 1]], -p.start)}]; }\n`;
  });
  body += withAcc ? `return acc[${T}];\n` : 'return 0;\n';
  return spec('concatGroup', g, withAcc ? ['acc', ...args] : args, body, sizeOf(outShape));
}

export function gather(g: CodeGen, xShape: Shape, indexShape: Shape, axis: number): KernelSpec {
  const { code, c } = g.coords(T, indexShape);
  const xs = stridesOf(xShape);
  const cc = c.map((v, d) => (d === axis ? 'iv' : v));
  const body = `${code}let iv = Math.floor(index[${T}] + 0.5);\nreturn x[${g.offset(cc, xs)}];\n`;
  return spec('gather', g, ['x', 'index'], body, sizeOf(indexShape));
}

export function scatterAdd(g: CodeGen, indexShape: Shape, axis: number, outShape: Shape): KernelSpec {
  const { code, c } = g.coords(T, outShape);
  const is = stridesOf(indexShape);
  let body = code;
  outShape.forEach((d, k) => {
    if (k !== axis && indexShape[k] < d) body += `if (${c[k]} >= ${g.d(indexShape[k])}) { return 0; }\n`;
  });
  const cc = c.map((v, d) => (d === axis ? 't' : v));
  const pos = g.offset(cc, is);
  body += `let acc = 0;\nfor (let t = 0; t < ${g.d(indexShape[axis])}; t++) {\n`;
  body += `let iv = Math.floor(index[${pos}] + 0.5);\nif (iv == ${c[axis]}) { acc += dy[${pos}]; }\n}\nreturn acc;\n`;
  return spec('scatterAdd', g, ['dy', 'index'], body, sizeOf(outShape), indexShape[axis]);
}

export function indexSelect(g: CodeGen, xShape: Shape, count: number, axis: number): KernelSpec {
  const outer = sizeOf(xShape.slice(0, axis));
  const inner = sizeOf(xShape.slice(axis + 1));
  const n = xShape[axis];
  const { code, c } = g.coords(T, [outer, count, inner]);
  const body = `${code}let iv = Math.floor(index[${g.int(c[1])}] + 0.5);\nreturn x[${g.offset([c[0], 'iv', c[2]], [n * inner, inner, 1])}];\n`;
  return spec('indexSelect', g, ['x', 'index'], body, outer * count * inner);
}

/** indexAdd over a host-built CSR of the indices: starts[r]..starts[r+1] in perm. */
export function indexAdd(g: CodeGen, xShape: Shape, count: number, axis: number, maxDup: number): KernelSpec {
  const outer = sizeOf(xShape.slice(0, axis));
  const inner = sizeOf(xShape.slice(axis + 1));
  const n = xShape[axis];
  const { code, c } = g.coords(T, [outer, n, inner]);
  let body = `${code}let s = starts[${g.int(c[1])}];\nlet e = starts[${g.int(c[1])} + 1];\nlet acc = 0;\n`;
  body += `for (let t = 0; t < ${g.d(maxDup)}; t++) {\nif (t >= e - s) { break; }\nlet ii = perm[${g.int('s')} + t];\n`;
  body += `acc += dy[${g.offset([c[0], 'ii', c[2]], [count * inner, inner, 1])}];\n}\nreturn acc;\n`;
  return spec('indexAdd', g, ['dy', 'starts', 'perm'], body, outer * n * inner, maxDup);
}

/** Row index r and column c of the current cell of a [rows, cols] output. */
function rowCol(g: CodeGen, cols: number): string {
  return g.divmod('r', 'c', T, cols);
}

/** Per-row sum of dy (log) or dy * y. */
export function softmaxGradRow(g: CodeGen, rows: number, cols: number, log: boolean): KernelSpec {
  const base = `${T} * ${g.d(cols)}`;
  const term = log ? `dy[${base} + c]` : `dy[${base} + c] * y[${base} + c]`;
  return spec('softmaxGradRow', g, ['y', 'dy'], `let s = 0;\nfor (let c = 0; c < ${g.d(cols)}; c++) { s += ${term}; }\nreturn s;\n`, rows, cols);
}

export function softmaxGradApply(g: CodeGen, rows: number, cols: number, log: boolean): KernelSpec {
  let body = `${rowCol(g, cols)}let s = srow[${g.int('r')}];\nlet yv = y[${T}];\nlet d = dy[${T}];\n`;
  body += log ? 'return d - Math.exp(yv) * s;\n' : 'return yv * (d - s);\n';
  return spec('softmaxGradApply', g, ['y', 'dy', 'srow'], body, rows * cols);
}

/** Sum of a vector of n values, times scale. */
export function sumScaled(g: CodeGen, n: number, scale: number): KernelSpec {
  return spec('sumScaled', g, ['x'], `let s = 0;\nfor (let i = 0; i < ${g.d(n)}; i++) { s += x[i]; }\nreturn s * ${g.f(scale)};\n`, 1, n);
}

/** Scores s = q_i . k_j * scale (a float uniform name), for row (h, i) and key j. */
function dot(g: CodeGen, qi: [string, number][], kj: [string, number][], dk: number, scale: string): string {
  const qa = g.lin([...qi, ['d', 1]]);
  const ka = g.lin([...kj, ['d', 1]]);
  return `let s = 0;\nfor (let d = 0; d < ${g.d(dk)}; d++) { s += q[${qa}] * k[${ka}]; }\ns = s * ${scale};\n`;
}

/**
 * Addresses row t of head hh: in a [bh, T, D] tensor, or with `heads` in a [B, T, heads, D]
 * one (hh split into batch and head by the declared code).
 */
function headRows(g: CodeGen, hh: string, heads?: number): { code: string; row: (t: string, T: number, D: number) => [string, number][] } {
  if (!heads) return { code: '', row: (t, n, d) => [[hh, n * d], [t, d]] };
  const [b, h] = [g.fresh('hb'), g.fresh('hh')];
  return { code: g.divmod(b, h, hh, heads), row: (t, n, d) => [[b, n * heads * d], [t, heads * d], [h, d]] };
}

/** lse over the visible keys of each query row [bh * tq]. */
export function attnLse(g: CodeGen, bh: number, tq: number, tk: number, dk: number, causal: boolean, scale: number, heads?: number): KernelSpec {
  const sc = g.f(scale);
  let body = g.divmod('h', 'i', T, tq);
  const L = headRows(g, 'h', heads);
  body += L.code;
  body += `let last = ${causal ? `i + ${g.d(tk - tq)}` : g.d(tk - 1)};\nlet m = -Infinity;\nlet z = 0;\n`;
  body += `for (let j = 0; j < ${g.d(tk)}; j++) {\nif (j > last) { break; }\n`;
  body += dot(g, heads ? L.row('i', tq, dk) : [[T, dk]], L.row('j', tk, dk), dk, sc);
  body += 'if (s > m) { z = z * Math.exp(m - s) + 1; m = s; } else { z += Math.exp(s - m); }\n}\n';
  body += 'if (z == 0) { return -Infinity; }\nreturn m + Math.log(z);\n';
  return spec('attnLse', g, ['q', 'k'], body, bh * tq, Math.max(tk, dk));
}

/** Probabilities P [bh, tq, tk] (0 where masked). */
export function attnProbs(g: CodeGen, bh: number, tq: number, tk: number, dk: number, causal: boolean, scale: number): KernelSpec {
  const sc = g.f(scale);
  const { code, c } = g.coords(T, [bh, tq, tk]);
  const [h, i, j] = c;
  let body = `${code}`;
  if (causal) body += `if (${j} > ${i} + ${g.d(tk - tq)}) { return 0; }\n`;
  body += dot(g, [[h, tq * dk], [i, dk]], [[h, tk * dk], [j, dk]], dk, sc);
  body += `return Math.exp(s - lse[${g.lin([[h, tq], [i, 1]])}]);\n`;
  return spec('attnProbs', g, ['q', 'k', 'lse'], body, bh * tq * tk, dk);
}

/**
 * out[h, i, d] = sum_j A[h, i, j] * B[h, j, d]: A [bh, I, J] (or its transpose
 * [bh, J, I] when transA), B [bh, J, D].
 */
export function bmm(g: CodeGen, bh: number, I: number, J: number, D: number, transA: boolean): KernelSpec {
  const { code, c } = g.coords(T, [bh, I, D]);
  const [h, i, d] = c;
  const a = transA ? g.lin([[h, J * I], ['j', I], [i, 1]]) : g.lin([[h, I * J], [i, J], ['j', 1]]);
  const b = g.lin([[h, J * D], ['j', D], [d, 1]]);
  const body = `${code}let acc = 0;\nfor (let j = 0; j < ${g.d(J)}; j++) { acc += A[${a}] * B[${b}]; }\nreturn acc;\n`;
  return spec('bmm', g, ['A', 'B'], body, bh * I * D, J);
}

/** Adam hyperparameters as the kernels read them. */
export interface AdamParams {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** lr / (1 - beta1^t). */
  stepSize: number;
  /** sqrt(1 - beta2^t). */
  bc2Sqrt: number;
  /** 1 - lr * weightDecay for AdamW, else 1. */
  decay: number;
}

// ---- Fused kernels: several results per dispatch, packed as lanes ----

/** Reads lane `lane` of a packed [n, 2] buffer `name` at row expression `r` (a variable). */
function lane2(g: CodeGen, name: string, r: string, lane: 0 | 1): string {
  return `${name}[${g.lin([[r, 2]], lane)}]`;
}

/**
 * Code that declares `mu` (0 uncentered) and `rs` for row `r` from packed
 * stats `st` or from `mean`/`rstd`; `rInt`: r is already an integer (a loop counter).
 */
function statReads(g: CodeGen, r: string, centered: boolean, packed: boolean, rInt = false): string {
  if (packed) return `let mu = ${lane2(g, 'st', r, 0)};\nlet rs = ${lane2(g, 'st', r, 1)};\n`;
  const at = rInt ? r : g.int(r);
  return `${centered ? `let mu = mean[${at}];\n` : 'let mu = 0;\n'}let rs = rstd[${at}];\n`;
}

/**
 * 1 / sqrt(mean((x - mu)^2) + eps) of row r into `rs`; when the squares
 * overflow float32 (|x| near 2e19), the deviations are scaled by their
 * largest magnitude first (eps is negligible there).
 */
function rstdCode(g: CodeGen, r: string, cols: number, eps: number): string {
  const n = g.d(cols);
  const at = (c: string): string => `x[${g.lin([[r, cols], [c, 1]])}]`;
  return (
    `let q = 0;\nfor (let c1 = 0; c1 < ${n}; c1++) { let d1 = ${at('c1')} - mu; q += d1 * d1; }\n` +
    `let rs = 1 / Math.sqrt(q / ${n} + ${g.f(eps)});\n` +
    'if (q > 3.0e38) {\n' +
    `let mx = 0;\nfor (let c2 = 0; c2 < ${n}; c2++) { let a2 = Math.abs(${at('c2')} - mu); if (a2 > mx) { mx = a2; } }\n` +
    `let q3 = 0;\nfor (let c3 = 0; c3 < ${n}; c3++) { let d3 = (${at('c3')} - mu) / mx; q3 += d3 * d3; }\n` +
    `rs = 1 / (mx * Math.sqrt(q3 / ${n}));\n}\n`
  );
}

/** layerNorm row statistics packed [rows, 2]: (mean, rstd), one dispatch. */
export function lnStats(g: CodeGen, rows: number, cols: number, eps: number): KernelSpec {
  const n = g.d(cols);
  let body = g.divmod('r', 'l', T, 2);
  body += `let s = 0;\nfor (let c = 0; c < ${n}; c++) { s += x[${g.lin([['r', cols], ['c', 1]])}]; }\nlet mu = s / ${n};\n`;
  body += 'if (l == 0) { return mu; }\n';
  body += rstdCode(g, 'r', cols, eps) + 'return rs;\n';
  return spec('lnStats', g, ['x'], body, rows * 2, cols);
}

/** rmsNorm's 1 / sqrt(mean(x^2) + eps) per row (overflow-safe). */
export function rmsRstd(g: CodeGen, rows: number, cols: number, eps: number): KernelSpec {
  const body = `let r = ${T};\nlet mu = 0;\n${rstdCode(g, 'r', cols, eps)}return rs;\n`;
  return spec('rmsRstd', g, ['x'], body, rows, cols);
}

/** (x - mu) * rs * w + b, the stats packed (layerNorm) or separate. */
export function normApplyStats(
  g: CodeGen, rows: number, cols: number, centered: boolean, packed: boolean, hasW: boolean, hasB: boolean,
): KernelSpec {
  const stats = packed ? ['st'] : [...(centered ? ['mean'] : []), 'rstd'];
  const args = ['x', ...stats, ...(hasW ? ['w'] : []), ...(hasB ? ['b'] : [])];
  let body = `${rowCol(g, cols)}${statReads(g, 'r', centered, packed)}let h = (x[${T}] - mu) * rs;\n`;
  if (hasW) body += `h = h * w[${g.int('c')}];\n`;
  if (hasB) body += `h = h + b[${g.int('c')}];\n`;
  return spec('normApply', g, args, body + 'return h;\n', rows * cols);
}

/** Per-row sums packed [rows, 2]: (sum g, sum g h), g = dy * w, h the normalized x. */
export function normRowSums(g: CodeGen, rows: number, cols: number, centered: boolean, packed: boolean, hasW: boolean): KernelSpec {
  const stats = packed ? ['st'] : [...(centered ? ['mean'] : []), 'rstd'];
  const args = ['x', ...stats, 'dy', ...(hasW ? ['w'] : [])];
  const n = g.d(cols);
  const at = g.lin([['r', cols], ['c', 1]]);
  let body = g.divmod('r', 'l', T, 2) + statReads(g, 'r', centered, packed);
  body += `let s = 0;\nfor (let c = 0; c < ${n}; c++) {\nlet gv = dy[${at}]${hasW ? ' * w[c]' : ''};\n`;
  body += `if (l == 1) { gv = gv * (x[${at}] - mu) * rs; }\ns += gv;\n}\nreturn s;\n`;
  return spec('normRowSums', g, args, body, rows * 2, cols);
}

/** dx = rs * (g - mean(g) - h * mean(g h)) from packed row sums; the RMS form drops mean(g). */
export function normDxSums(g: CodeGen, rows: number, cols: number, centered: boolean, packed: boolean, hasW: boolean, hasAdd = false): KernelSpec {
  const stats = packed ? ['st'] : [...(centered ? ['mean'] : []), 'rstd'];
  const args = ['x', ...stats, 'dy', 'sums', ...(hasW ? ['w'] : []), ...(hasAdd ? ['addend'] : [])];
  const n = g.d(cols);
  let body = `${rowCol(g, cols)}${statReads(g, 'r', centered, packed)}`;
  body += `let h = (x[${T}] - mu) * rs;\nlet gv = dy[${T}]${hasW ? ` * w[${g.int('c')}]` : ''};\n`;
  const sg = centered ? ` - ${lane2(g, 'sums', 'r', 0)} / ${n}` : '';
  body += `return rs * (gv${sg} - h * ${lane2(g, 'sums', 'r', 1)} / ${n})${hasAdd ? ` + addend[${T}]` : ''};\n`;
  return spec('normDx', g, args, body, rows * cols);
}

/** Column sums over rows of dy * h (dw) or of dy (db), the stats packed (layerNorm) or separate. */
export function normColSum(g: CodeGen, rows: number, cols: number, centered: boolean, packed: boolean, withH: boolean): KernelSpec {
  const stats = packed ? ['st'] : [...(centered ? ['mean'] : []), 'rstd'];
  const args = withH ? ['x', ...stats, 'dy'] : ['dy'];
  const at = `r * ${g.d(cols)} + ${T}`;
  let body = `let s = 0;\nfor (let r = 0; r < ${g.d(rows)}; r++) {\n`;
  body += withH ? `${statReads(g, 'r', centered, packed, true)}s += dy[${at}] * (x[${at}] - mu) * rs;\n` : `s += dy[${at}];\n`;
  body += '}\nreturn s;\n';
  return spec('normColSum', g, args, body, cols, rows);
}

/** Row max and sum of exp(x - max), packed [rows, 2]. */
export function rowStats(g: CodeGen, rows: number, cols: number): KernelSpec {
  const n = g.d(cols);
  let body = g.divmod('r', 'l', T, 2);
  body += `let m = -Infinity;\nfor (let c = 0; c < ${n}; c++) { let v = x[${g.lin([['r', cols], ['c', 1]])}]; if (v > m) { m = v; } }\n`;
  body += 'if (l == 0) { return m; }\n';
  body += `let s = 0;\nfor (let c2 = 0; c2 < ${n}; c2++) { s += Math.exp(x[${g.lin([['r', cols], ['c2', 1]])}] - m); }\nreturn s;\n`;
  return spec('rowStats', g, ['x'], body, rows * 2, cols);
}

/** Declares m (row max) and s (sum of exp(x - m)) for row r: from packed stats, or computed in place. */
function rowStatCode(g: CodeGen, r: string, cols: number, inline: boolean, x = 'x'): string {
  if (!inline) return `let m = ${lane2(g, 'st', r, 0)};\nlet s = ${lane2(g, 'st', r, 1)};\n`;
  const n = g.d(cols);
  return (
    `let m = -Infinity;\nfor (let c1 = 0; c1 < ${n}; c1++) { let v1 = ${x}[${g.lin([[r, cols], ['c1', 1]])}]; if (v1 > m) { m = v1; } }\n` +
    `let s = 0;\nfor (let c2 = 0; c2 < ${n}; c2++) { s += Math.exp(${x}[${g.lin([[r, cols], ['c2', 1]])}] - m); }\n`
  );
}

/** Rows this short are normalized in one pass: each cell recomputes its row's max and sum. */
export const ONE_PASS_COLS = 256;

/** softmax exp(x - m) / s or logSoftmax (x - m) - log s; `inline`: one pass, else from rowStats. */
export function softmaxRows(g: CodeGen, rows: number, cols: number, log: boolean, inline: boolean): KernelSpec {
  let body = rowCol(g, cols) + rowStatCode(g, 'r', cols, inline);
  body += log ? `return (x[${T}] - m) - Math.log(s);\n` : `return Math.exp(x[${T}] - m) / s;\n`;
  return spec('softmax', g, inline ? ['x'] : ['x', 'st'], body, rows * cols, inline ? cols : 1);
}

/** Per-row NLL (m - x_t) + log s (0 for ignored rows), the row stats computed in place. */
export function ceRows(g: CodeGen, rows: number, cols: number, ignoreIndex: number): KernelSpec {
  let body = `let r = ${T};\nlet t = Math.floor(targets[${T}] + 0.5);\nif (t == ${flt(ignoreIndex)}) { return 0; }\n`;
  body += rowStatCode(g, 'r', cols, true, 'logits');
  body += `return (m - logits[${g.lin([['r', cols], ['t', 1]])}]) + Math.log(s);\n`;
  return spec('ceRows', g, ['logits', 'targets'], body, rows, cols);
}

/** d logits = (softmax - onehot) * dy[0] * mult, zero on ignored rows; `inline`: one pass. */
export function ceGradRows(g: CodeGen, rows: number, cols: number, ignoreIndex: number, mult: number, inline: boolean): KernelSpec {
  let body = `${rowCol(g, cols)}let t = Math.floor(targets[${g.int('r')}] + 0.5);\nif (t == ${flt(ignoreIndex)}) { return 0; }\n`;
  body += rowStatCode(g, 'r', cols, inline, 'logits');
  body += `let sc = dy[0] * ${g.f(mult)};\nlet pv = Math.exp(logits[${T}] - m) / s * sc;\nif (c == t) { pv = pv - sc; }\nreturn pv;\n`;
  const args = inline ? ['logits', 'targets', 'dy'] : ['logits', 'targets', 'dy', 'st'];
  return spec('ceGrad', g, args, body, rows * cols, inline ? cols : 1);
}

/** dS = P * (dout_i . v_j - dout_i . out_i) * scale, the row delta computed in place (no extra dispatch). */
export function attnDsFused(g: CodeGen, bh: number, tq: number, tk: number, dv: number, scale: number): KernelSpec {
  const { code, c } = g.coords(T, [bh, tq, tk]);
  const [h, i, j] = c;
  const n = g.d(dv);
  let body = `${code}let pv = P[${T}];\nif (pv == 0) { return 0; }\nlet s = 0;\nlet dl = 0;\n`;
  body += `for (let d = 0; d < ${n}; d++) {\nlet o = dout[${g.lin([[h, tq * dv], [i, dv], ['d', 1]])}];\n`;
  body += `s += o * v[${g.lin([[h, tk * dv], [j, dv], ['d', 1]])}];\ndl += o * out[${g.lin([[h, tq * dv], [i, dv], ['d', 1]])}];\n}\n`;
  body += `return pv * (s - dl) * ${g.f(scale)};\n`;
  return spec('attnDs', g, ['P', 'dout', 'v', 'out'], body, bh * tq * tk, dv);
}

/**
 * dS like attnDsFused, with P recomputed in the cell (exp(q_i . k_j * scale - lse_i), 0 where masked)
 * instead of read from a stored [T, T] buffer.
 */
export function attnDsInline(
  g: CodeGen, bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean, heads?: number,
): KernelSpec {
  const { code, c } = g.coords(T, [bh, tq, tk]);
  const [h, i, j] = c;
  const L = headRows(g, h, heads);
  let body = code + L.code;
  if (causal) body += `if (${j} > ${i} + ${g.d(tk - tq)}) { return 0; }\n`;
  body += dot(g, L.row(i, tq, dk), L.row(j, tk, dk), dk, g.f(scale));
  body += `let pv = Math.exp(s - lse[${g.lin([[h, tq], [i, 1]])}]);\n`;
  const n = g.d(dv);
  body += `let sd = 0;\nlet dl = 0;\nfor (let e = 0; e < ${n}; e++) {\nlet o = dout[${g.lin([...L.row(i, tq, dv), ['e', 1]])}];\n`;
  body += `sd += o * v[${g.lin([...L.row(j, tk, dv), ['e', 1]])}];\ndl += o * out[${g.lin([...L.row(i, tq, dv), ['e', 1]])}];\n}\n`;
  body += `return pv * (sd - dl) * ${g.f(scale)};\n`;
  return spec('attnDsInline', g, ['q', 'k', 'lse', 'dout', 'v', 'out'], body, bh * tq * tk, Math.max(dk, dv));
}

/** Where a kernel finds element i of a storage: buf[i * stride + index] (a lane of a packed buffer, or plain). */
export interface LaneAt {
  stride: number;
  index: number;
}

/**
 * Adam's new m and v of element `i` (a lin term; `ii` the same as an index
 * expression); m and v are read through their lane strides as uniforms, so
 * plain state (the first step) and packed state share one kernel. Declares mi, vi.
 */
function adamMoments(cg: CodeGen, i: string, ii: string, decoupled: boolean, h: AdamParams, m: LaneAt, v: LaneAt): string {
  const b1 = cg.f(h.beta1);
  const b2 = cg.f(h.beta2);
  const m0 = `m[${cg.lin([[i, m.stride]], m.index, true)}]`;
  const v0 = `v[${cg.lin([[i, v.stride]], v.index, true)}]`;
  let body = `let gi = g[${ii}];\n`;
  if (!decoupled) body += `gi = gi + ${cg.f(h.weightDecay)} * w[${ii}];\n`;
  body += `let mi = ${b1} * ${m0} + (1 - ${b1}) * gi;\nlet vi = ${b2} * ${v0} + (1 - ${b2}) * gi * gi;\n`;
  return body;
}

/** Adam's new parameter (reads the old m, v). */
export function adamParam(cg: CodeGen, decoupled: boolean, size: number, h: AdamParams, m: LaneAt, v: LaneAt): KernelSpec {
  let body = adamMoments(cg, T, T, decoupled, h, m, v);
  body += `return w[${T}] * ${cg.f(h.decay)} - (${cg.f(h.stepSize)} * mi) / (Math.sqrt(vi) / ${cg.f(h.bc2Sqrt)} + ${cg.f(h.eps)});\n`;
  return spec('adamParam', cg, ['w', 'g', 'm', 'v'], body, size);
}

/**
 * Adam's whole update in one dispatch (GL modes): the new parameter is the
 * result, the new m and v are the outputs of the sub-kernels adamM and adamV.
 */
export function adamFused(cg: CodeGen, decoupled: boolean, size: number, h: AdamParams): KernelSpec {
  let body = `let gi = g[${T}];\n`;
  if (!decoupled) body += `gi = gi + ${cg.f(h.weightDecay)} * w[${T}];\n`;
  body += `let mi = adamM(gi, m[${T}], ${cg.f(h.beta1)});\nlet vi = adamV(gi, v[${T}], ${cg.f(h.beta2)});\n`;
  body += `return w[${T}] * ${cg.f(h.decay)} - (${cg.f(h.stepSize)} * mi) / (Math.sqrt(vi) / ${cg.f(h.bc2Sqrt)} + ${cg.f(h.eps)});\n`;
  return {
    ...spec('adam', cg, ['w', 'g', 'm', 'v'], body, size),
    subKernels: [
      'function adamM(gi, m0, b1) { return b1 * m0 + (1 - b1) * gi; }',
      'function adamV(gi, v0, b2) { return b2 * v0 + (1 - b2) * gi * gi; }',
    ],
  };
}

/** Adam's new m and v in one dispatch, packed [size, 2]. */
export function adamMV(cg: CodeGen, decoupled: boolean, size: number, h: AdamParams, m: LaneAt, v: LaneAt): KernelSpec {
  let body = cg.divmod('i', 'l', T, 2);
  body += adamMoments(cg, 'i', cg.int('i'), decoupled, h, m, v);
  body += 'if (l == 0) { return mi; }\nreturn vi;\n';
  return spec('adamMV', cg, ['w', 'g', 'm', 'v'], body, size * 2);
}

/** Partial sums of contiguous chunks: out[o, k] = sum of x[o, k*chunk .. min(R, (k+1)*chunk)). */
export function chunkSums(g: CodeGen, outer: number, R: number, chunk: number): KernelSpec {
  const K = Math.ceil(R / chunk);
  let body = g.divmod('o', 'k', T, K);
  body += `let s = 0;\nlet j0 = k * ${g.d(chunk)};\nfor (let j = 0; j < ${g.d(chunk)}; j++) {\n`;
  body += `if (j0 + j >= ${g.d(R)}) { break; }\ns += x[${g.lin([['o', R], ['k', chunk], ['j', 1]])}];\n}\nreturn s;\n`;
  return spec('chunkSums', g, ['x'], body, outer * K, chunk);
}
