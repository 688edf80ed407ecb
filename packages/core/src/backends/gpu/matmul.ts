import { sizeOf, type Shape } from '../../shape.ts';
import type { Args, GpuContext, GpuData } from './context.ts';
import { isGlMode } from './gpujs.ts';
import { glMatmul, glMatmulFits, type GlMatmulExtras } from './matmul-gl.ts';
import { webgpuMatmul, webgpuMatmulFits } from './matmul-webgpu.ts';
import * as src from './sources.ts';

/** The gpu matmul kernel and the batched products attention runs (packed GL kernels where they fit). */

export function matmul(ctx: GpuContext, { inputs: { a, b, bias = null, h = null, w = null, addend = null, at = null }, attrs }: Args<'matmul'>): GpuData {
  const { aShape, bShape, transA, transB, outShape, alpha, aAct = null } = attrs;
  const gradOf = at ? attrs.gradOf ?? null : null;
  const lowRank = h && w ? attrs.lowRank ?? null : null;
  const k = transA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  if (k === 0 && !bias && !lowRank && !addend) return ctx.zeros(sizeOf(outShape));
  const tiled = isGlMode(ctx.mode) && glMatmulFits(outShape);
  // The tiled GL kernel applies GELU to a texel it holds for 4 outputs; a generic kernel would
  // run it per multiply-add (N times per element of a), so there GELU is its own pass first.
  const ga = aAct && !tiled ? ctx.run(src.unary(ctx.gen(), aAct, sizeOf(aShape)), [a]) : null;
  const extras = { alpha, lowRank, addend: addend !== null, aAct: ga ? null : aAct, gradOf };
  const spec = tiled
    ? glMatmulSpec(ctx, aShape, bShape, transA, transB, outShape, { bias: bias !== null, ...extras })
    : ctx.mode === 'webgpu' && webgpuMatmulFits(outShape) && webgpuEpilogue(extras, outShape)
      ? webgpuMatmul(ctx.gen(), aShape, bShape, transA, transB, outShape, bias !== null, extras)
      : src.matmul(ctx.gen(), aShape, bShape, transA, transB, outShape, bias !== null, extras);
  const args = [ga ?? a, b, ...(bias ? [bias] : []), ...(lowRank && h && w ? [h, w] : []), ...(addend ? [addend] : []), ...(gradOf && at ? [at] : [])];
  const out = ctx.run(spec, args);
  if (ga) ctx.free(ga);
  return out;
}

/** What the webgpu 4-output matmul computes: bias, alpha, addend, and a low-rank term on 2-d outputs (the rest runs the generic kernel). */
function webgpuEpilogue(e: Omit<GlMatmulExtras, 'bias'>, outShape: Shape): boolean {
  return !e.aAct && !e.gradOf && (!e.lowRank || outShape.length === 2);
}

export function glMatmulSpec(
  ctx: GpuContext, aShape: Shape, bShape: Shape, transA: boolean, transB: boolean, outShape: Shape, extras: GlMatmulExtras,
): src.KernelSpec {
  const g = glMatmul(aShape, bShape, transA, transB, outShape, extras, ctx.mode === 'webgl2');
  return { name: 'matmul4', src: g.src, raw: g.raw, size: g.size, loop: g.loop, ints: g.ints, floats: g.floats };
}

/**
 * out[h] = A[h] @ B[h] (A[h]^T when transA): A [bh, I, J] or [bh, J, I], B [bh, J, D]. With
 * `heads` (GL only), B and out are [B, rows, heads, D] instead (attention's per-head layout).
 */
export function bmm(ctx: GpuContext, [a, b]: [GpuData, GpuData], bh: number, I: number, J: number, D: number, transA: boolean, heads?: number): GpuData {
  const outShape = heads ? [bh / heads, heads, I, D] : [bh, I, D];
  const lead = outShape.slice(0, -2);
  const aShape = transA ? [...lead, J, I] : [...lead, I, J];
  if (heads || (isGlMode(ctx.mode) && glMatmulFits(outShape))) {
    return ctx.run(glMatmulSpec(ctx, aShape, [...lead, J, D], transA, false, outShape, { bias: false, heads }), [a, b]);
  }
  if (ctx.mode === 'webgpu' && webgpuMatmulFits(outShape)) return ctx.run(webgpuMatmul(ctx.gen(), aShape, [...lead, J, D], transA, false, outShape, false), [a, b]);
  return ctx.run(src.bmm(ctx.gen(), bh, I, J, D, transA), [a, b]);
}
