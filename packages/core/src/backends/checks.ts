/**
 * Argument checks every backend runs before an index or target kernel, once
 * here so that cpu and gpu throw the same messages.
 */

/** Throws unless each of the first `count` indices lies in [0, n). */
export function checkIndices(op: string, idx: ArrayLike<number>, count: number, n: number): void {
  for (let i = 0; i < count; i++) {
    const v = idx[i];
    if (v < 0 || v >= n) throw new Error(`${op}: index ${v} at position ${i} is out of range [0, ${n})`);
  }
}

/** The targets that are not `ignoreIndex`; throws at one outside [0, cols). */
export function countValidTargets(targets: ArrayLike<number>, rows: number, cols: number, ignoreIndex: number): number {
  let valid = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    if (t < 0 || t >= cols) {
      throw new Error(`crossEntropy: target ${t} at position ${r} is out of range for ${cols} classes (ignoreIndex ${ignoreIndex})`);
    }
    valid++;
  }
  return valid;
}
