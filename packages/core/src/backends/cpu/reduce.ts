import { sizeOf, stridesOf } from '../../shape.ts';
import { forEachRow, type Args, type CpuContext, type FArr } from './arrays.ts';
import { runRows } from './rows.ts';

/** The cpu reduction kernel (sum, max over sorted axes). */

export function reduce(ctx: CpuContext, { inputs: { x }, attrs: { op, shape, axes } }: Args<'reduce'>): FArr {
  const keptShape = shape.filter((_, i) => !axes.includes(i));
  const out = ctx.alloc(sizeOf(keptShape));
  const init = op === 'sum' ? 0 : -Infinity;
  out.fill(init);
  const rank = shape.length;
  const n = sizeOf(shape);
  if (n === 0) return out;
  // Fast path: reducing the trailing axes (row sums / row maxima).
  const trailing = axes.every((a, i) => a === rank - axes.length + i);
  if (trailing) {
    const cols = sizeOf(axes.map((a) => shape[a]));
    if (op === 'sum') {
      runRows('reduce', 'sumTrailingRows', [x, out], [cols], out.length, n);
      return out;
    }
    for (let r = 0; r < out.length; r++) {
      let acc = init;
      const o = r * cols;
      for (let c = 0; c < cols; c++) if (x[o + c] > acc || x[o + c] !== x[o + c]) acc = x[o + c];
      out[r] = acc;
    }
    return out;
  }
  const leading = axes.every((a, i) => a === i);
  if (leading) {
    // Reducing the leading axes (a bias gradient): accumulate whole rows.
    const cols = out.length;
    const rows = n / cols;
    if (op === 'sum') {
      // Split by columns: each column's sum keeps its row order on any thread count.
      runRows('reduce', 'sumLeadingCols', [x, out], [cols, rows], cols, n);
      return out;
    }
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let c = 0; c < cols; c++) if (x[o + c] > out[c] || x[o + c] !== x[o + c]) out[c] = x[o + c];
    }
    return out;
  }
  // General: walk the input, mapping each row onto the output.
  const outStridesKept = stridesOf(keptShape);
  const outStrides = new Array<number>(rank).fill(0);
  let k = 0;
  for (let i = 0; i < rank; i++) if (!axes.includes(i)) outStrides[i] = outStridesKept[k++];
  const cols = shape[rank - 1];
  const co = outStrides[rank - 1];
  forEachRow(shape, [outStrides], (row, [oo]) => {
    const xi = row * cols;
    if (op === 'sum') for (let c = 0; c < cols; c++) out[oo + c * co] += x[xi + c];
    else for (let c = 0; c < cols; c++) if (x[xi + c] > out[oo + c * co] || x[xi + c] !== x[xi + c]) out[oo + c * co] = x[xi + c];
  });
  return out;
}
