import { Tensor, mul, noGrad, sum, tidy } from '@lowrank/core';

/**
 * Scales gradients in place so their global L2 norm is at most maxNorm; returns the norm before clipping.
 * @example const norm = clipGradNorm(model.parameters(), 1.0);
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  const grads = [...new Set(params)].map((p) => p.grad).filter((g): g is Tensor => g !== null);
  if (grads.length === 0) return 0;
  if (!grads[0].backend.hasStorage) return 0;
  let sq = 0;
  noGrad(() => tidy(() => {
    for (const g of grads) sq += sum(mul(g, g)).item();
  }));
  const total = Math.sqrt(sq);
  const coef = maxNorm / (total + 1e-6);
  if (coef < 1) {
    noGrad(() => {
      for (const g of grads) {
        const scaled = mul(g, coef);
        g.assign(scaled);
        scaled.dispose();
      }
    });
  }
  return total;
}
