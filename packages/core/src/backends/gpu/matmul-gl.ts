/**
 * The GL modes' matmul: hand-written GLSL over packed storage (4 values per
 * RGBA32F texel). Each fragment computes 4 consecutive outputs of one row
 * (out[m, n..n+3]) and walks K four at a time, so 16 multiply-adds cost 5
 * texel fetches (A's 4 values in one, B's 4 rows or columns in 4) instead of
 * 32. Texel coordinates advance incrementally: no division in the loop.
 *
 * Sizes, strides and offsets are integer uniforms as everywhere else, so one
 * compiled shader serves every shape with the same structure (transposes,
 * batch rank, bias). Any M and K work (a row that starts mid-texel is read
 * through a shifting window of two texels, a ragged last K-block is masked),
 * so a new sequence length reuses the shader; N % 4 == 0 is required (a
 * fragment's 4 outputs share a row), other N take the generic kernel.
 *
 * NOTE: masked lanes are zeroed on both operands, never multiplied by 0, so
 * an Inf beside the data cannot turn into NaN.
 */
import { broadcastStrides, sizeOf, type Shape } from '../../shape.ts';
import type { LowRank } from '../../backend.ts';
import type { RawGl } from './gpujs.ts';

export interface GlMatmul {
  /** Stub gpu.js source that declares the arguments; its body is replaced by `raw`. */
  src: string;
  raw: RawGl;
  size: number;
  loop: number;
  ints: number[];
  floats: number[];
}

/**
 * What every hand-written GL kernel shares: its integer uniforms (`user_nI`), a texel
 * fetch of an argument, and the stub source gpu.js compiles to declare the arguments.
 */
export class GlSource {
  readonly ints: number[] = [];
  readonly tex: string;

  constructor(webgl2: boolean) {
    this.tex = webgl2 ? 'texture' : 'texture2D';
  }

  /** An integer uniform holding v. */
  int(v: number): string {
    this.ints.push(v);
    return `user_n${this.ints.length - 1}`;
  }

  /** The texel of argument `arg` at integer texel coordinates p (needs `vec2 i<arg> = 1.0 / vec2(user_<arg>Size)`). */
  fetch(arg: string, p: string): string {
    return `${this.tex}(user_${arg}, (vec2(${p}) + 0.5) * i${arg})`;
  }

  /** A stub that reads every argument (arrays, then the int uniforms, then float uniforms) so gpu.js declares each; its body never runs. */
  stub(arrays: readonly string[], floats: readonly string[] = []): string {
    const args = [...arrays, ...this.ints.map((_, i) => `n${i}`), ...floats];
    const sum = [...arrays.map((a) => `${a}[0]`), ...floats].join(' + ');
    return `function (${args.join(', ')}) {\nlet s = ${sum};\n${this.ints.map((_, i) => `s += n${i};\n`).join('')}return s;\n}`;
  }
}

/** Whether the packed matmul serves these shapes (a fragment's 4 outputs must share a row). */
export function glMatmulFits(outShape: Shape): boolean {
  return outShape[outShape.length - 1] % 4 === 0 && sizeOf(outShape) > 0;
}

/** GLSL helpers: exact integer split by a float reciprocal, texel streams, lane selects. */
export const HELPERS = `
ivec2 lrSplit(int a, int d) {
  int q = int(floor((float(a) + 0.5) / float(d)));
  int r = a - q * d;
  if (r < 0) { q -= 1; r += d; } else if (r >= d) { q += 1; r -= d; }
  return ivec2(q, r);
}
ivec2 lrTexel(int t, ivec2 size) {
  ivec2 qr = lrSplit(t, size.x);
  return ivec2(qr.y, qr.x);
}
ivec2 lrStep(ivec2 p, ivec2 st, int w) {
  p += st;
  if (p.x >= w) { p.x -= w; p.y += 1; }
  return p;
}
vec4 lrShift(vec4 lo, vec4 hi, int s) {
  if (s == 0) { return lo; }
  if (s == 1) { return vec4(lo.yzw, hi.x); }
  if (s == 2) { return vec4(lo.zw, hi.xy); }
  return vec4(lo.w, hi.xyz);
}
float lrPick(vec4 t, int c) {
  if (c == 0) { return t.x; }
  if (c == 1) { return t.y; }
  if (c == 2) { return t.z; }
  return t.w;
}
vec4 lrKeep(vec4 v, int r) {
  if (r < 4) { v.w = 0.0; }
  if (r < 3) { v.z = 0.0; }
  if (r < 2) { v.y = 0.0; }
  return v;
}
`;

const GELU_C = Math.sqrt(2 / Math.PI).toFixed(9);

/**
 * GELU (tanh approximation) and its derivative on 4 lanes, for the prologue and the gradient epilogue.
 * NOTE: tanh from exp(-2|u|), which never overflows (GLSL ES 1.00 has no tanh).
 */
const GELU_GLSL = `
vec4 lrTanh(vec4 u) {
  vec4 e = exp(-2.0 * abs(u));
  return sign(u) * (1.0 - e) / (1.0 + e);
}
vec4 lrGelu(vec4 x) {
  return 0.5 * x * (1.0 + lrTanh(${GELU_C} * (x + 0.044715 * x * x * x)));
}
vec4 lrGeluGrad(vec4 x) {
  vec4 t = lrTanh(${GELU_C} * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * ${GELU_C} * (1.0 + 3.0 * 0.044715 * x * x);
}
`;

/** Emits GLSL for texel reads of one argument. */
class Reads {
  constructor(readonly arg: string, readonly tex: string) {}

  fetch(p: string): string {
    return `${this.tex}(user_${this.arg}, (vec2(${p}) + 0.5) * i${this.arg})`;
  }

  /** A window over 4 consecutive elements from flat element `e`, one texel further per step. */
  initRun(name: string, e: string): string {
    const size = `user_${this.arg}Size`;
    return `  ivec2 ${name}q = lrSplit(${e}, 4);\n  int ${name}s = ${name}q.y;\n` +
      `  ivec2 ${name}p = lrTexel(${name}q.x, ${size});\n  vec4 ${name}lo = ${this.fetch(`${name}p`)};\n` +
      `  ${name}p = lrStep(${name}p, ivec2(1, 0), ${size}.x);\n`;
  }

  stepRun(name: string, v: string): string {
    return `    vec4 ${name}hi = ${this.fetch(`${name}p`)};\n    vec4 ${v} = lrShift(${name}lo, ${name}hi, ${name}s);\n` +
      `    ${name}lo = ${name}hi;\n    ${name}p = lrStep(${name}p, ivec2(1, 0), user_${this.arg}Size.x);\n`;
  }

  /** One element per step from flat element `e`, `stride` texels further per step (its channel never changes). */
  initLane(name: string, e: string): string {
    return `  ivec2 ${name}q = lrSplit(${e}, 4);\n  int ${name}c = ${name}q.y;\n  ivec2 ${name}p = lrTexel(${name}q.x, user_${this.arg}Size);\n`;
  }

  stepLane(name: string): string {
    return `lrPick(${this.fetch(`${name}p`)}, ${name}c)`;
  }
}

/** One product's operands: x [M, K] (or [K, M] when transX) from xOff, y [K, N] (or [N, K] when transY) from yOff. */
interface Product {
  x: string;
  y: string;
  xOff: string;
  yOff: string;
  transX: boolean;
  transY: boolean;
  /** Uniform names of K, M and N, and of y's row stride (default N; y not transposed). */
  nK: string;
  nM: string;
  nN: string;
  yRow?: string;
  /** x's values pass through GELU as they are read (x not transposed). */
  geluX?: boolean;
}

/** GLSL that adds out[m, n..n+3] of one product into `acc` (declared by the caller); `p` prefixes its names. */
function productCode(tex: string, { x, y, xOff, yOff, transX, transY, nK, nM, nN, yRow = nN, geluX = false }: Product, p: string, acc: string): string {
  const X = new Reads(x, tex);
  const Y = new Reads(y, tex);
  let body = `  vec2 i${x} = 1.0 / vec2(user_${x}Size);\n  vec2 i${y} = 1.0 / vec2(user_${y}Size);\n`;
  // x[m, k..k+3]: a window along the row, or (transposed) 4 lanes M elements apart: k*M + m.
  let loop = '';
  if (!transX) {
    body += X.initRun(`${p}ra`, `${xOff} + m * ${nK}`);
    loop += X.stepRun(`${p}ra`, 'av');
    // Lanes past K hold a neighbour's values: the masking below zeroes them after GELU.
    if (geluX) loop += '    av = lrGelu(av);\n';
  } else {
    if (geluX) throw new Error('gpu matmul: a GELU prologue needs a not transposed a');
    for (let j = 0; j < 4; j++) body += X.initLane(`${p}la${j}`, `${xOff} + ${j} * ${nM} + m`);
    // 4 rows further is 4 M elements = M texels: each lane keeps its channel.
    body += `  ivec2 ${p}sa = lrTexel(${nM}, user_${x}Size);\n`;
    loop += `    vec4 av = vec4(${[0, 1, 2, 3].map((j) => X.stepLane(`${p}la${j}`)).join(', ')});\n`;
    for (let j = 0; j < 4; j++) loop += `    ${p}la${j}p = lrStep(${p}la${j}p, ${p}sa, user_${x}Size.x);\n`;
  }
  // y rows k..k+3 at n..n+3 (aligned: N % 4 == 0), or (transposed) windows along rows n..n+3.
  if (!transY) {
    body += `  ivec2 ${p}pb = lrTexel((${yOff} + n) / 4, user_${y}Size);\n  ivec2 ${p}sb = lrTexel(${yRow} / 4, user_${y}Size);\n`;
    for (let j = 0; j < 4; j++) loop += `    vec4 b${j} = ${Y.fetch(`${p}pb`)};\n    ${p}pb = lrStep(${p}pb, ${p}sb, user_${y}Size.x);\n`;
  } else {
    for (let j = 0; j < 4; j++) {
      body += Y.initRun(`${p}rb${j}`, `${yOff} + (n + ${j}) * ${nK}`);
      loop += Y.stepRun(`${p}rb${j}`, `b${j}`);
    }
  }
  // The last, ragged block: lanes past K are zeroed on both sides.
  loop += `    int left = ${nK} - k;\n    if (left < 4) {\n      av = lrKeep(av, left);\n`;
  loop += transY
    ? [0, 1, 2, 3].map((j) => `      b${j} = lrKeep(b${j}, left);\n`).join('')
    : '      if (left < 4) { b3 = vec4(0.0); }\n      if (left < 3) { b2 = vec4(0.0); }\n      if (left < 2) { b1 = vec4(0.0); }\n';
  loop += '    }\n';
  loop += transY
    ? `    ${acc} += vec4(dot(av, b0), dot(av, b1), dot(av, b2), dot(av, b3));\n`
    : `    ${acc} += av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3;\n`;
  return `${body}  for (int k = 0; k < LOOP_MAX; k += 4) {\n    if (k >= ${nK}) { break; }\n${loop}  }\n`;
}

/** What a GL matmul adds to its product (see the matmul kernel's contract). */
export interface GlMatmulExtras {
  bias: boolean;
  alpha?: number;
  lowRank?: LowRank | null;
  addend?: boolean;
  aAct?: 'gelu' | null;
  gradOf?: 'gelu' | null;
  /**
   * Attention's per-head products: batch dims [B, heads], and b (not transposed) and out stored
   * [B, rows, heads, N] (projections viewed per head); a stays [B, heads, M, K].
   */
  heads?: number;
}

/**
 * out = alpha * a @ b (+ bias) (+ scale * h @ op(w)) (+ addend), a [..., aRows, aCols] (transposed when
 * transA), b likewise, out [...batch, M, N]; batch dims broadcast; the low-rank term is 2-D only.
 */
export function glMatmul(
  aShape: Shape, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape, extras: GlMatmulExtras, webgl2: boolean,
): GlMatmul {
  const r = outShape.length;
  const M = outShape[r - 2];
  const N = outShape[r - 1];
  const K = transA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  const batch = outShape.slice(0, -2);
  const aMat = aShape[aShape.length - 2] * aShape[aShape.length - 1];
  const bMat = bShape[bShape.length - 2] * bShape[bShape.length - 1];
  const aBatch = broadcastStrides(aShape.slice(0, -2), batch).map((s) => s * aMat);
  const H = extras.heads;
  if (H && (batch.length !== 2 || transB || batch[1] !== H)) throw new Error(`gpu matmul: a heads layout needs batch [B, ${H}] and b not transposed`);
  // Per head, b's rows are H * N apart and head h starts h * N in.
  const bBatch = H ? [K * H * N, N] : broadcastStrides(bShape.slice(0, -2), batch).map((s) => s * bMat);
  const g = new GlSource(webgl2);
  const u = (v: number): string => g.int(v);
  const size = sizeOf(outShape);
  const total = u(size);
  const nN = u(N);
  const nMN = u(M * N);
  const nK = u(K);
  const nM = u(M);
  let body = `vec4 lrMatmul() {\n  int o = index * 4;\n  if (o >= ${total}) { return vec4(0.0); }\n`;
  body += '  int aOff = 0;\n  int bOff = 0;\n';
  if (H) {
    // o is the position in [B, M, H, N]: n, then the head, then m and b.
    body += `  ivec2 rn = lrSplit(o, ${nN});\n  int n = rn.y;\n  ivec2 rh = lrSplit(rn.x, ${u(H)});\n  ivec2 bm = lrSplit(rh.x, ${nM});\n  int m = bm.y;\n`;
    body += `  aOff = bm.x * ${u(aBatch[0])} + rh.y * ${u(aBatch[1])};\n  bOff = bm.x * ${u(bBatch[0])} + rh.y * ${u(bBatch[1])};\n`;
  } else {
    body += `  ivec2 bq = lrSplit(o, ${nMN});\n  ivec2 mn = lrSplit(bq.y, ${nN});\n  int m = mn.x;\n  int n = mn.y;\n`;
  }
  if (batch.length > 0 && !H) {
    body += '  int bt = bq.x;\n';
    for (let d = batch.length - 1; d >= 0; d--) {
      body += `  ivec2 c${d} = lrSplit(bt, ${u(batch[d])});\n  bt = c${d}.x;\n`;
      body += `  aOff += c${d}.y * ${u(aBatch[d])};\n  bOff += c${d}.y * ${u(bBatch[d])};\n`;
    }
  }
  const floats: number[] = [];
  const float = (v: number): string => `user_f${floats.push(v) - 1}`;
  const scaled = extras.alpha !== undefined && extras.alpha !== 1;
  const biasAt = `${g.tex}(user_bias, (vec2(lrTexel(n / 4, user_biasSize)) + 0.5) / vec2(user_biasSize))`;
  body += extras.bias && !scaled ? `  vec4 acc = ${biasAt};\n` : '  vec4 acc = vec4(0.0);\n';
  const yRow = H ? u(H * N) : nN;
  if (extras.gradOf && (extras.bias || scaled || extras.lowRank)) throw new Error('gpu matmul: a GELU gradient epilogue takes no bias, alpha or low-rank term');
  const geluX = extras.aAct === 'gelu';
  body += productCode(g.tex, { x: 'a', y: 'b', xOff: 'aOff', yOff: 'bOff', transX: transA, transY: transB, nK, nM, nN, yRow, geluX }, '', 'acc');
  const texel = (arg: string): string => `${g.tex}(user_${arg}, (vec2(lrTexel(index, user_${arg}Size)) + 0.5) / vec2(user_${arg}Size))`;
  if (extras.gradOf) body += `  acc *= lrGeluGrad(${texel('at')});\n`;
  if (scaled) body += `  acc = acc * ${float(extras.alpha!)}${extras.bias ? ` + ${biasAt}` : ''};\n`;
  const low = extras.lowRank;
  if (low) {
    body += '  vec4 lr = vec4(0.0);\n';
    body += productCode(g.tex, { x: 'h', y: 'w', xOff: '0', yOff: '0', transX: false, transY: low.transW, nK: u(low.r), nM, nN }, 'l', 'lr');
    body += `  acc += ${float(low.scale)} * lr;\n`;
  }
  // The addend has the output's layout: this fragment's texel.
  if (extras.addend) body += `  acc += ${texel('addend')};\n`;
  body += '  return acc;\n}\n';
  const arrays = ['a', 'b', ...(extras.bias ? ['bias'] : []), ...(low ? ['h', 'w'] : []), ...(extras.addend ? ['addend'] : []), ...(extras.gradOf ? ['at'] : [])];
  const stub = g.stub(arrays, floats.map((_, i) => `f${i}`));
  const helpers = HELPERS + (geluX || extras.gradOf ? GELU_GLSL : '') + body;
  return { src: stub, raw: { helpers, result: 'lrMatmul()' }, size, loop: Math.max(K, low?.r ?? 0), ints: g.ints, floats };
}
