import { full, noGrad, rand, randn, type Tensor } from '@lowrank/core';

// Each initialiser draws a fresh tensor on the parameter's backend and assigns it
// in place, so identities (and ties) hold. On `meta` nothing is drawn.

/**
 * Fills `t` from U(low, high) with the engine's seeded RNG. @example uniform_(w, -0.1, 0.1)
 */
export function uniform_(t: Tensor, low: number, high: number): Tensor {
  return noGrad(() => replace(t, rand(t.shape, { low, high, backend: t.backend.name })));
}

/** Fills `t` from N(mean, std). @example normal_(w, 0, 0.02) */
export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  return noGrad(() => replace(t, randn(t.shape, { mean, std, backend: t.backend.name })));
}

/** Fills `t` with a constant. @example constant_(b, 0) */
export function constant_(t: Tensor, value: number): Tensor {
  return noGrad(() => replace(t, full(t.shape, value, { backend: t.backend.name })));
}

/**
 * PyTorch's default Linear/Conv init, kaiming_uniform_(a = sqrt 5): U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
 * @example kaimingUniform_(w) // w is [out, in]
 */
export function kaimingUniform_(t: Tensor, a = Math.sqrt(5)): Tensor {
  const fanIn = t.rank >= 2 ? t.size / t.shape[0] : t.size;
  const gain = Math.sqrt(2 / (1 + a * a));
  const bound = gain * Math.sqrt(3 / Math.max(fanIn, 1));
  return uniform_(t, -bound, bound);
}

function replace(t: Tensor, src: Tensor): Tensor {
  t.assign(src);
  src.dispose();
  return t;
}
