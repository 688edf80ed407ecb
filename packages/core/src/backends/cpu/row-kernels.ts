/**
 * The cpu backend's row kernels (softmax, cross-entropy, layerNorm, rmsNorm,
 * SiLU, AdamW, the attention softmax), written once and run both on the
 * calling thread and, from their source text (`String(fn)`), in the pool's
 * workers (worker-source.ts). So each function is self-contained: it calls
 * no other function of this file, makes no closure and reads nothing outside
 * its arguments but `Math`. Every kernel computes units [u0, u1) (rows,
 * columns or elements) and each output element in one fixed order, so a
 * split of the units across threads gives the bits of one thread.
 *
 * `v` are the kernel's arrays (null for an absent optional one), `s` its
 * numbers (a Float64Array in the pool, so both sides read the same doubles).
 * Sizes and offsets are read with `| 0`: a double from a Float64Array used
 * as a loop bound or index made V8 do the index arithmetic in doubles (2x
 * slower copies).
 */
import type { FArr } from './arrays.ts';

/** Float, int32 (targets) or float64 (per-row partial sums) views; null for an absent weight. */
export type RowViews = (FArr | Int32Array | null)[];
export type RowKernel = (v: RowViews, s: ArrayLike<number>, u0: number, u1: number) => void;

/** v = [x, y]; s = [cols, log]. Rows. */
function softmaxRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, y = v[1]!;
  const cols = s[0] | 0, log = s[1] !== 0;
  for (let r = u0; r < u1; r++) {
    const o = r * cols;
    // NOTE: subtracting the row max keeps exp() finite for |x| ~ 1e4; each exp is taken once.
    let m = -Infinity;
    for (let c = 0; c < cols; c++) if (x[o + c] > m) m = x[o + c];
    let sum = 0;
    if (log) {
      // NOTE: m and log(sum) are subtracted separately: at |x| ~ 1e30, m + logS rounds to m.
      for (let c = 0; c < cols; c++) sum += Math.exp(x[o + c] - m);
      const logS = Math.log(sum);
      for (let c = 0; c < cols; c++) y[o + c] = x[o + c] - m - logS;
      continue;
    }
    for (let c = 0; c < cols; c++) {
      const e = Math.exp(x[o + c] - m);
      y[o + c] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let c = 0; c < cols; c++) y[o + c] *= inv;
  }
}

/** v = [y, dy, dx]; s = [cols, log]. Rows. */
function softmaxGradRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const y = v[0]!, dy = v[1]!, dx = v[2]!;
  const cols = s[0] | 0, log = s[1] !== 0;
  for (let r = u0; r < u1; r++) {
    const o = r * cols;
    let sum = 0;
    if (log) {
      for (let c = 0; c < cols; c++) sum += dy[o + c];
      for (let c = 0; c < cols; c++) dx[o + c] = dy[o + c] - Math.exp(y[o + c]) * sum;
    } else {
      for (let c = 0; c < cols; c++) sum += dy[o + c] * y[o + c];
      for (let c = 0; c < cols; c++) dx[o + c] = y[o + c] * (dy[o + c] - sum);
    }
  }
}

/** v = [logits, targets, loss (float64, per row; ignored rows untouched)]; s = [cols, ignoreIndex]. Rows. */
function crossEntropyLossRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, targets = v[1]!, loss = v[2]!;
  const cols = s[0] | 0, ignoreIndex = s[1] | 0;
  for (let r = u0; r < u1; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    const o = r * cols;
    let m = -Infinity;
    for (let c = 0; c < cols; c++) if (x[o + c] > m) m = x[o + c];
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[o + c] - m);
    loss[r] = m - x[o + t] + Math.log(sum);
  }
}

/** v = [logits, targets, dx]; s = [cols, ignoreIndex, scale]. Rows. */
function crossEntropyGradRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, targets = v[1]!, dx = v[2]!;
  const cols = s[0] | 0, ignoreIndex = s[1] | 0, scale = s[2];
  for (let r = u0; r < u1; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    const o = r * cols;
    let m = -Infinity;
    for (let c = 0; c < cols; c++) if (x[o + c] > m) m = x[o + c];
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[o + c] - m);
    const logS = Math.log(sum);
    for (let c = 0; c < cols; c++) dx[o + c] = Math.exp(x[o + c] - m - logS) * scale;
    dx[o + t] -= scale;
  }
}

/** v = [x, w, b, y, mean, rstd]; s = [cols, eps]. Rows. */
function layerNormRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, w = v[1], b = v[2], y = v[3]!, mean = v[4]!, rstd = v[5]!;
  const cols = s[0] | 0, eps = s[1];
  for (let r = u0; r < u1; r++) {
    const o = r * cols;
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += x[o + c];
    const mu = sum / cols;
    let q = 0;
    for (let c = 0; c < cols; c++) {
      const d = x[o + c] - mu;
      q += d * d;
    }
    const rs = 1 / Math.sqrt(q / cols + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) {
      const h = (x[o + c] - mu) * rs;
      y[o + c] = h * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
  }
}

/**
 * layerNorm's dx, dw and db in one pass, for one thread (a split by rows
 * would reorder the dw sums): the bits of its dx split by rows (dw, db null) + normGradWCols.
 * v = [x, w, mean, rstd, dy, dx, dw, db]; s = [cols]. Rows, all of them.
 */
function layerNormGradFused(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, w = v[1], mean = v[2]!, rstd = v[3]!, dy = v[4]!, dx = v[5], dw = v[6], db = v[7];
  const cols = s[0] | 0;
  for (let r = u0; r < u1; r++) {
    const o = r * cols;
    const mu = mean[r];
    const rs = rstd[r];
    let sumG = 0;
    let sumGH = 0;
    for (let c = 0; c < cols; c++) {
      const h = (x[o + c] - mu) * rs;
      const g = dy[o + c] * (w ? w[c] : 1);
      sumG += g;
      sumGH += g * h;
      if (dw) dw[c] += dy[o + c] * h;
      if (db) db[c] += dy[o + c];
    }
    if (!dx) continue;
    const mg = sumG / cols;
    const mgh = sumGH / cols;
    for (let c = 0; c < cols; c++) {
      const h = (x[o + c] - mu) * rs;
      const g = dy[o + c] * (w ? w[c] : 1);
      dx[o + c] = rs * (g - mg - h * mgh);
    }
  }
}

/** rmsNorm's dx and dw in one pass, for one thread: v = [x, w, rstd, dy, dx, dw]; s = [cols]. Rows, all of them. */
function rmsNormGradFused(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, w = v[1], rstd = v[2]!, dy = v[3]!, dx = v[4], dw = v[5];
  const cols = s[0] | 0;
  for (let r = u0; r < u1; r++) {
    const o = r * cols;
    const rs = rstd[r];
    let sumGH = 0;
    for (let c = 0; c < cols; c++) {
      const h = x[o + c] * rs;
      sumGH += dy[o + c] * (w ? w[c] : 1) * h;
      if (dw) dw[c] += dy[o + c] * h;
    }
    if (!dx) continue;
    const mgh = sumGH / cols;
    for (let c = 0; c < cols; c++) {
      const h = x[o + c] * rs;
      dx[o + c] = rs * (dy[o + c] * (w ? w[c] : 1) - h * mgh);
    }
  }
}

/**
 * The weight and bias gradients of layerNorm (mean given) or rmsNorm (mean
 * null): dw[c] += dy h, db[c] += dy over the rows in order. v = [x, mean,
 * rstd, dy, dw, db]; s = [cols, rows]. Columns: a thread owns whole columns.
 */
function normGradWCols(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, mean = v[1], rstd = v[2]!, dy = v[3]!, dw = v[4], db = v[5];
  const cols = s[0] | 0, rows = s[1] | 0;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const rs = rstd[r];
    if (mean) {
      const mu = mean[r];
      for (let c = u0; c < u1; c++) {
        if (dw) dw[c] += dy[o + c] * ((x[o + c] - mu) * rs);
        if (db) db[c] += dy[o + c];
      }
    } else {
      for (let c = u0; c < u1; c++) if (dw) dw[c] += dy[o + c] * (x[o + c] * rs);
    }
  }
}

/** v = [x, w, y, rstd]; s = [cols, eps]. Rows. */
function rmsNormRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, w = v[1], y = v[2]!, rstd = v[3]!;
  const cols = s[0] | 0, eps = s[1];
  for (let r = u0; r < u1; r++) {
    const o = r * cols;
    let q = 0;
    for (let c = 0; c < cols; c++) q += x[o + c] * x[o + c];
    const rs = 1 / Math.sqrt(q / cols + eps);
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) y[o + c] = x[o + c] * rs * (w ? w[c] : 1);
  }
}

/** out = x sigmoid(x) (sigmoid stable for large |x|): v = [x, out]. Elements. */
function siluElements(v: RowViews, _s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, out = v[1]!;
  for (let i = u0; i < u1; i++) {
    const xi = x[i];
    let sg: number;
    if (xi >= 0) sg = 1 / (1 + Math.exp(-xi));
    else {
      const e = Math.exp(xi);
      sg = e / (1 + e);
    }
    out[i] = xi * sg;
  }
}

/** out = dy sigmoid(x) (1 + x (1 - sigmoid(x))): v = [x, dy, out]. Elements. */
function siluGradElements(v: RowViews, _s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, dy = v[1]!, out = v[2]!;
  for (let i = u0; i < u1; i++) {
    const xi = x[i];
    let sg: number;
    if (xi >= 0) sg = 1 / (1 + Math.exp(-xi));
    else {
      const e = Math.exp(xi);
      sg = e / (1 + e);
    }
    out[i] = dy[i] * sg * (1 + xi * (1 - sg));
  }
}

/**
 * Adam / AdamW in place: v = [p, g, m, v]; s = [beta1, beta2, eps,
 * weightDecay, decoupled, stepSize, decay, bc2Sqrt]. Elements.
 */
function adamElements(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const p = v[0]!, g = v[1]!, m = v[2]!, sq = v[3]!;
  const beta1 = s[0], beta2 = s[1], eps = s[2], weightDecay = s[3], decoupled = s[4] !== 0;
  const stepSize = s[5], decay = s[6], bc2Sqrt = s[7];
  for (let i = u0; i < u1; i++) {
    let gi = g[i];
    if (!decoupled && weightDecay !== 0) gi += weightDecay * p[i];
    const mi = beta1 * m[i] + (1 - beta1) * gi;
    const vi = beta2 * sq[i] + (1 - beta2) * gi * gi;
    m[i] = mi;
    sq[i] = vi;
    p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
  }
}

/**
 * Attention scores S [bh * tq, tk] into probabilities in place (scaled,
 * causally masked, max-subtracted) and each row's log-sum-exp:
 * v = [s, lse]; s = [tq, tk, scale, causal]. Rows.
 */
function attentionSoftmaxRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const sc = v[0]!, lse = v[1]!;
  const tq = s[0] | 0, tk = s[1] | 0, scale = s[2], causal = s[3] !== 0;
  for (let r = u0; r < u1; r++) {
    const i = r % tq;
    const o = r * tk;
    const last = causal ? i + tk - tq : tk - 1;
    let m = -Infinity;
    for (let j = 0; j <= last; j++) {
      const x = sc[o + j] * scale;
      sc[o + j] = x;
      if (x > m) m = x;
    }
    let sum = 0;
    for (let j = 0; j <= last; j++) {
      const e = Math.exp(sc[o + j] - m);
      sc[o + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j <= last; j++) sc[o + j] *= inv;
    // A query before every key (causal, tq > tk) sees none: last < 0, and its row is all zeros.
    for (let j = Math.max(last + 1, 0); j < tk; j++) sc[o + j] = 0;
    lse[r] = m + Math.log(sum);
  }
}

/** P = exp(S scale - lse), causally masked, in place: v = [p, lse]; s = [tq, tk, scale, causal]. Rows. */
function attentionProbsRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const p = v[0]!, lse = v[1]!;
  const tq = s[0] | 0, tk = s[1] | 0, scale = s[2], causal = s[3] !== 0;
  for (let r = u0; r < u1; r++) {
    const i = r % tq;
    const o = r * tk;
    const last = causal ? i + tk - tq : tk - 1;
    const l = lse[r];
    for (let j = 0; j <= last; j++) p[o + j] = Math.exp(p[o + j] * scale - l);
    for (let j = Math.max(last + 1, 0); j < tk; j++) p[o + j] = 0;
  }
}

/** dS = P (dO V^T - rowsum(dO O)) scale, in place over dO V^T: v = [ds, p, dout, out]; s = [tk, dv, scale]. Rows. */
function attentionScoreGradRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const ds = v[0]!, p = v[1]!, dout = v[2]!, out = v[3]!;
  const tk = s[0] | 0, dv = s[1] | 0, scale = s[2];
  for (let r = u0; r < u1; r++) {
    let delta = 0;
    const oo = r * dv;
    for (let d = 0; d < dv; d++) delta += dout[oo + d] * out[oo + d];
    const o = r * tk;
    for (let j = 0; j < tk; j++) ds[o + j] = p[o + j] * (ds[o + j] - delta) * scale;
  }
}

/** out = a op b, same shapes: v = [a, b, out]; s = [op] (0 add, 1 sub, 2 mul, 3 div). Elements. */
function binaryElements(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const a = v[0]!, b = v[1]!, out = v[2]!;
  const op = s[0] | 0;
  if (op === 0) for (let i = u0; i < u1; i++) out[i] = a[i] + b[i];
  else if (op === 1) for (let i = u0; i < u1; i++) out[i] = a[i] - b[i];
  else if (op === 2) for (let i = u0; i < u1; i++) out[i] = a[i] * b[i];
  else for (let i = u0; i < u1; i++) out[i] = a[i] / b[i];
}

/** out[r, c] = a[r, c] op b[c] (a bias-like b): v = [a, b, out]; s = [cols, op] (as binaryElements). Rows. */
function binaryRowsBias(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const a = v[0]!, b = v[1]!, out = v[2]!;
  const cols = s[0] | 0, op = s[1] | 0;
  for (let r = u0; r < u1; r++) {
    const o = r * cols;
    if (op === 0) for (let c = 0; c < cols; c++) out[o + c] = a[o + c] + b[c];
    else if (op === 1) for (let c = 0; c < cols; c++) out[o + c] = a[o + c] - b[c];
    else if (op === 2) for (let c = 0; c < cols; c++) out[o + c] = a[o + c] * b[c];
    else for (let c = 0; c < cols; c++) out[o + c] = a[o + c] / b[c];
  }
}

/** out[c] += x[r, c] over the rows in order (a bias gradient): v = [x, out]; s = [cols, rows]. Columns. */
function sumLeadingCols(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, out = v[1]!;
  const cols = s[0] | 0, rows = s[1] | 0;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = u0; c < u1; c++) out[c] += x[o + c];
  }
}

/** out[r] = sum over c of x[r, c], in order: v = [x, out]; s = [cols]. Rows. */
function sumTrailingRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, out = v[1]!;
  const cols = s[0] | 0;
  for (let r = u0; r < u1; r++) {
    let acc = 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) acc += x[o + c];
    out[r] = acc;
  }
}

/**
 * A strided gather of up to 4 axes (every permute in a transformer): row
 * (a, b, c) of out [n0, n1, n2, n3] from x at offset + a s0 + b s1 + c s2 +
 * d s3. v = [x, out]; s = [n1, n2, n3, s0, s1, s2, s3, offset]. Rows of n3.
 */
function stridedRows(v: RowViews, s: ArrayLike<number>, u0: number, u1: number): void {
  const x = v[0]!, out = v[1]!;
  const n1 = s[0] | 0, n2 = s[1] | 0, n3 = s[2] | 0, s0 = s[3] | 0, s1 = s[4] | 0, s2 = s[5] | 0, s3 = s[6] | 0, offset = s[7] | 0;
  for (let r = u0; r < u1; r++) {
    const c = r % n2;
    const ab = (r - c) / n2;
    const b = ab % n1;
    const a = (ab - b) / n1;
    const base = offset + a * s0 + b * s1 + c * s2;
    const o = r * n3;
    if (s3 === 1) for (let d = 0; d < n3; d++) out[o + d] = x[base + d];
    else for (let d = 0; d < n3; d++) out[o + d] = x[base + d * s3];
  }
}

/** The kernels by name; the pool's row job names one by its position here. */
export const ROW_KERNELS = {
  softmaxRows, softmaxGradRows, crossEntropyLossRows, crossEntropyGradRows, layerNormRows,
  normGradWCols, rmsNormRows, siluElements, siluGradElements, adamElements,
  attentionSoftmaxRows, attentionProbsRows, attentionScoreGradRows, binaryElements, binaryRowsBias, sumLeadingCols,
  sumTrailingRows, stridedRows, layerNormGradFused, rmsNormGradFused,
} satisfies Record<string, RowKernel>;

export type RowKernelName = keyof typeof ROW_KERNELS;

/** Position -> kernel (property names survive minification; function names may not). */
export const ROW_KERNEL_LIST: readonly RowKernel[] = Object.values(ROW_KERNELS);
const NAMES = Object.keys(ROW_KERNELS);

/** A kernel's position in ROW_KERNEL_LIST. */
export function rowKernelIndex(name: RowKernelName): number {
  return NAMES.indexOf(name);
}
