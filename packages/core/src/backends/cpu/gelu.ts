/**
 * GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
 * the one JS definition of the cpu backend (activations.wat is its SIMD twin).
 */
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export function gelu(x: number): number {
  // NOTE: 0.5 (1 + tanh(u)) = sigmoid(2u); exp is much cheaper than tanh in V8.
  return x / (1 + Math.exp(-2 * geluArg(x)));
}

function geluArg(x: number): number {
  return SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
}

export function geluGrad(x: number): number {
  // NOTE: with s = sigmoid(2u): 0.5 (1 + tanh u) = s and 0.5 (1 - tanh^2 u) = 2 s (1 - s).
  const s = 1 / (1 + Math.exp(-2 * geluArg(x)));
  const du = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
  return s + 2 * x * s * (1 - s) * du;
}

/** out[i] = gelu(x[i]): the loop the backend runs where WebAssembly SIMD is unavailable. */
export function geluInto(x: ArrayLike<number>, out: { [i: number]: number }, size: number): void {
  for (let i = 0; i < size; i++) out[i] = gelu(x[i]);
}
