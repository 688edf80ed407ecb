/**
 * Seeded random numbers (xoshiro128**), global to the engine so that
 * initialisation and dropout reproduce after `manualSeed`.
 */
export class Rng {
  private s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed = 0) {
    this.seed(seed);
  }

  seed(seed: number): void {
    // splitmix32 spreads a small integer seed over the 128-bit state
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
    this.spare = null;
  }

  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1). */
  random(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Standard normal (Box-Muller, caching the second value). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.random();
    const v = this.random();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  getState(): number[] {
    return [...this.s, this.spare === null ? NaN : this.spare];
  }

  setState(state: readonly number[]): void {
    const words = Array.isArray(state) ? state.slice(0, 4) : [];
    if (!Array.isArray(state) || state.length !== 5 || !words.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)) {
      throw new Error(`Rng.setState: expected 4 uint32 integers and a number, got ${JSON.stringify(state)}`);
    }
    // NOTE: xoshiro never reaches the all-zero state and never leaves it: randn would loop forever.
    if (words.every((w) => w === 0)) throw new Error('Rng.setState: the all-zero state is invalid');
    if (typeof state[4] !== 'number' || state[4] === Infinity || state[4] === -Infinity) {
      throw new Error(`Rng.setState: the cached normal must be a finite number or NaN, got ${String(state[4])}`);
    }
    for (let i = 0; i < 4; i++) this.s[i] = state[i] >>> 0;
    this.spare = Number.isNaN(state[4]) ? null : state[4];
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export const globalRng = new Rng(0);

/** Reseeds the engine's generator: `manualSeed(42)` makes rand/randn/dropout reproducible. */
export function manualSeed(seed: number): void {
  globalRng.seed(seed);
}
