import { broadcastStrides, sizeOf, type Shape } from '../../shape.ts';
import { kernelSource, type CodeGen } from './codegen.ts';
import type { KernelSpec, MatmulExtras } from './sources.ts';

/** How many adjacent outputs of a row one webgpu invocation computes. */
export const WEBGPU_COLS = 4;

/** Whether the webgpu matmul serves this output: rows whose length is a multiple of WEBGPU_COLS. */
export function webgpuMatmulFits(outShape: Shape): boolean {
  return outShape[outShape.length - 1] % WEBGPU_COLS === 0;
}

/**
 * webgpu matmul: each invocation computes 4 adjacent outputs of one row, so a
 * load of `a` serves 4 multiply-adds (the generic kernel loads a and b per
 * multiply-add). gpu.js's webgpu mode writes an Array(4) result as 4 floats in
 * a row, which is the flat row-major output; webgpu.ts runs a kernel that
 * returns `[...]` over a quarter of the outputs and hands on a plain buffer.
 * Sizes and strides are uniforms, as in the generic kernel. The epilogue (alpha, a
 * low-rank term on 2-d outputs, an addend) is the generic kernel's, per column.
 */
export function webgpuMatmul(
  g: CodeGen, aShape: Shape, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape, withBias: boolean,
  extras: Pick<MatmulExtras, 'alpha' | 'lowRank' | 'addend'> = {},
): KernelSpec {
  const r = outShape.length;
  const [m, n] = [outShape[r - 2], outShape[r - 1]];
  const k = transA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  const [aRows, aCols] = aShape.slice(-2);
  const [bRows, bCols] = bShape.slice(-2);
  const [sAm, sAk] = transA ? [1, aCols] : [aCols, 1];
  const [sBk, sBn] = transB ? [1, bCols] : [bCols, 1];
  const batch = outShape.slice(0, -2);
  const aBatch = broadcastStrides(aShape.slice(0, -2), batch).map((s) => s * aRows * aCols);
  const bBatch = broadcastStrides(bShape.slice(0, -2), batch).map((s) => s * bRows * bCols);
  const { code, c } = g.coords(`this.thread.x * ${WEBGPU_COLS}`, [...batch, m, n]);
  const nb = batch.length;
  const col = c[nb + 1];
  const aAt = g.offset([...c.slice(0, nb), c[nb], 'p'], [...aBatch, sAm, sAk]);
  const lanes = Array.from({ length: WEBGPU_COLS }, (_, j) => j);
  // Column j's operand sits j * sBn past column 0's: a uniform offset on the same expression.
  const bAt = lanes.map((j) => g.lin([...c.slice(0, nb).map((v, i) => [v, bBatch[i]] as const), [col, sBn], ['p', sBk]], j * sBn));
  const scaled = extras.alpha !== undefined && extras.alpha !== 1;
  const init = lanes.map((j) => `let acc${j} = ${withBias && !scaled ? `bias[${g.lin([[col, 1]], j)}]` : '0'};\n`).join('');
  const body =
    `${code}${init}for (let p = 0; p < ${g.d(k)}; p++) {\nlet av = a[${aAt}];\n` +
    lanes.map((j) => `acc${j} += av * b[${bAt[j]}];\n`).join('') +
    `}\n${epilogue(g, lanes, c[nb], col, n, withBias && scaled, extras)}return [${lanes.map((j) => `acc${j}`).join(', ')}];\n`;
  const low = extras.lowRank ?? null;
  const args = ['a', 'b', ...(withBias ? ['bias'] : []), ...(low ? ['h', 'w'] : []), ...(extras.addend ? ['addend'] : [])];
  const loop = Math.max(k, low?.r ?? 0);
  return { name: 'matmul4', src: kernelSource([...args, ...g.uniformNames()], body), size: sizeOf(outShape), loop, ints: [...g.ints], floats: [...g.floats] };
}

/** acc_j = acc_j * alpha (+ bias), + scale * h[row] . w[col + j], + addend: the generic matmul's order. */
function epilogue(
  g: CodeGen, lanes: readonly number[], row: string, col: string, n: number, biasAfterScale: boolean,
  extras: Pick<MatmulExtras, 'alpha' | 'lowRank' | 'addend'>,
): string {
  let out = '';
  if (extras.alpha !== undefined && extras.alpha !== 1) {
    const alpha = g.f(extras.alpha);
    out += lanes.map((j) => `acc${j} = acc${j} * ${alpha}${biasAfterScale ? ` + bias[${g.lin([[col, 1]], j)}]` : ''};\n`).join('');
  }
  const low = extras.lowRank;
  if (low) {
    const hAt = g.lin([[row, low.r], ['jr', 1]]);
    const [sCol, sJ] = low.transW ? [low.r, 1] : [1, n];
    out += lanes.map((j) => `let lr${j} = 0;\n`).join('') + `for (let jr = 0; jr < ${g.d(low.r)}; jr++) {\nlet hv = h[${hAt}];\n`;
    out += lanes.map((j) => `lr${j} += hv * w[${g.lin([[col, sCol], ['jr', sJ]], j * sCol)}];\n`).join('') + '}\n';
    const scale = g.f(low.scale);
    out += lanes.map((j) => `acc${j} += ${scale} * lr${j};\n`).join('');
  }
  if (extras.addend) out += lanes.map((j) => `acc${j} += addend[this.thread.x * ${WEBGPU_COLS} + ${j}];\n`).join('');
  return out;
}
