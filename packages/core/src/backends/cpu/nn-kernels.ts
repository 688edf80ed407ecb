import type { AdamHyper, Reduction } from '../../backend.ts';
import type { Alloc, Arr, FArr } from './arrays.ts';

export function softmaxRows(alloc: Alloc, x: FArr, rows: number, cols: number, log: boolean): FArr {
  const y = alloc(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    if (log) {
      const [m, logS] = rowMaxLogSum(x, o, cols);
      for (let c = 0; c < cols; c++) y[o + c] = x[o + c] - m - logS;
      continue;
    }
    // NOTE: subtracting the row max keeps exp() finite for |x| ~ 1e4; each exp is taken once.
    let m = -Infinity;
    for (let c = 0; c < cols; c++) if (x[o + c] > m) m = x[o + c];
    let s = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp(x[o + c] - m);
      y[o + c] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let c = 0; c < cols; c++) y[o + c] *= inv;
  }
  return y;
}

export function softmaxGradRows(alloc: Alloc, y: FArr, dy: FArr, rows: number, cols: number, log: boolean): FArr {
  const dx = alloc(rows * cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    if (log) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += dy[o + c];
      for (let c = 0; c < cols; c++) dx[o + c] = dy[o + c] - Math.exp(y[o + c]) * s;
    } else {
      let s = 0;
      for (let c = 0; c < cols; c++) s += dy[o + c] * y[o + c];
      for (let c = 0; c < cols; c++) dx[o + c] = y[o + c] * (dy[o + c] - s);
    }
  }
  return dx;
}

function checkTarget(t: number, r: number, cols: number, ignoreIndex: number): void {
  if (t !== ignoreIndex && (t < 0 || t >= cols)) {
    throw new Error(`crossEntropy: target ${t} at position ${r} is out of range for ${cols} classes (ignoreIndex ${ignoreIndex})`);
  }
}

function countValid(targets: Arr, rows: number, cols: number, ignoreIndex: number): number {
  let n = 0;
  for (let r = 0; r < rows; r++) {
    checkTarget(targets[r], r, cols, ignoreIndex);
    if (targets[r] !== ignoreIndex) n++;
  }
  return n;
}

/**
 * The row max m and log(sum(exp(x - m))) of one row: logsumexp = m + logS.
 * NOTE: callers subtract m and logS separately: at |x| ~ 1e30, m + logS rounds to m,
 * and x - (m + logS) would lose the log(n) entirely.
 */
function rowMaxLogSum(x: FArr, o: number, cols: number): [number, number] {
  let m = -Infinity;
  for (let c = 0; c < cols; c++) if (x[o + c] > m) m = x[o + c];
  let s = 0;
  for (let c = 0; c < cols; c++) s += Math.exp(x[o + c] - m);
  return [m, Math.log(s)];
}

export function crossEntropyRows(
  alloc: Alloc, logits: FArr, targets: Arr, rows: number, cols: number, ignoreIndex: number, reduction: Reduction,
): FArr {
  const valid = countValid(targets, rows, cols, ignoreIndex);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    const o = r * cols;
    const [m, logS] = rowMaxLogSum(logits, o, cols);
    total += m - logits[o + t] + logS;
  }
  // PyTorch: a mean over zero valid targets is NaN.
  const out = alloc(1);
  out[0] = reduction === 'mean' ? total / valid : total;
  return out;
}

export function crossEntropyGradRows(
  alloc: Alloc, logits: FArr, targets: Arr, dy: FArr, rows: number, cols: number, ignoreIndex: number, reduction: Reduction,
): FArr {
  const valid = countValid(targets, rows, cols, ignoreIndex);
  const scale = reduction === 'mean' ? dy[0] / valid : dy[0];
  const dx = alloc(rows * cols);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    const o = r * cols;
    const [m, logS] = rowMaxLogSum(logits, o, cols);
    for (let c = 0; c < cols; c++) dx[o + c] = Math.exp(logits[o + c] - m - logS) * scale;
    dx[o + t] -= scale;
  }
  return dx;
}

export function layerNormRows(
  alloc: Alloc, x: FArr, w: FArr | null, b: FArr | null, rows: number, cols: number, eps: number,
): { y: FArr; mean: FArr; rstd: FArr } {
  const y = alloc(rows * cols);
  const mean = alloc(rows);
  const rstd = alloc(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[o + c];
    const mu = s / cols;
    let v = 0;
    for (let c = 0; c < cols; c++) {
      const d = x[o + c] - mu;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / cols + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) {
      const h = (x[o + c] - mu) * rs;
      y[o + c] = h * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
  }
  return { y, mean, rstd };
}

export function layerNormGradRows(
  alloc: Alloc, x: FArr, w: FArr | null, mean: FArr, rstd: FArr, dy: FArr, rows: number, cols: number,
  need: { x: boolean; w: boolean; b: boolean },
): { dx: FArr | null; dw: FArr | null; db: FArr | null } {
  const dx = need.x ? alloc(rows * cols) : null;
  const dw = need.w ? alloc(cols) : null;
  const db = need.b ? alloc(cols) : null;
  for (let r = 0; r < rows; r++) {
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
    if (dx) {
      const mg = sumG / cols;
      const mgh = sumGH / cols;
      for (let c = 0; c < cols; c++) {
        const h = (x[o + c] - mu) * rs;
        const g = dy[o + c] * (w ? w[c] : 1);
        dx[o + c] = rs * (g - mg - h * mgh);
      }
    }
  }
  return { dx, dw, db };
}

export function rmsNormRows(
  alloc: Alloc, x: FArr, w: FArr | null, rows: number, cols: number, eps: number,
): { y: FArr; rstd: FArr } {
  const y = alloc(rows * cols);
  const rstd = alloc(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[o + c] * x[o + c];
    const rs = 1 / Math.sqrt(s / cols + eps);
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) y[o + c] = x[o + c] * rs * (w ? w[c] : 1);
  }
  return { y, rstd };
}

export function rmsNormGradRows(
  alloc: Alloc, x: FArr, w: FArr | null, rstd: FArr, dy: FArr, rows: number, cols: number, need: { x: boolean; w: boolean },
): { dx: FArr | null; dw: FArr | null } {
  const dx = need.x ? alloc(rows * cols) : null;
  const dw = need.w ? alloc(cols) : null;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const rs = rstd[r];
    let sumGH = 0;
    for (let c = 0; c < cols; c++) {
      const h = x[o + c] * rs;
      sumGH += dy[o + c] * (w ? w[c] : 1) * h;
      if (dw) dw[c] += dy[o + c] * h;
    }
    if (dx) {
      const mgh = sumGH / cols;
      for (let c = 0; c < cols; c++) {
        const h = x[o + c] * rs;
        dx[o + c] = rs * (dy[o + c] * (w ? w[c] : 1) - h * mgh);
      }
    }
  }
  return { dx, dw };
}

/** In place: p, m, v are updated and returned. */
export function adamInPlace(p: FArr, g: FArr, m: FArr, v: FArr, size: number, h: AdamHyper): void {
  const { lr, beta1, beta2, eps, weightDecay, step, decoupled } = h;
  const bc1 = 1 - Math.pow(beta1, step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
  const stepSize = lr / bc1;
  const decay = decoupled ? 1 - lr * weightDecay : 1;
  for (let i = 0; i < size; i++) {
    let gi = g[i];
    if (!decoupled && weightDecay !== 0) gi += weightDecay * p[i];
    const mi = beta1 * m[i] + (1 - beta1) * gi;
    const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
  }
}
