/**
 * The candidate closest to `name`: an exact match after snake_case -> camelCase and case
 * folding first (`top_p` -> `topP`), else the smallest edit distance within a third of the
 * name's length. Undefined when nothing is close.
 *
 * @example closestName('lora_alpha', ['r', 'loraAlpha']) // 'loraAlpha'
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const fold = (s: string) => s.replace(/[-_]/g, '').toLowerCase();
  const folded = candidates.find((c) => fold(c) === fold(name));
  if (folded !== undefined) return folded;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(fold(name), fold(c));
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/**
 * Throws when `options` has a key outside `allowed`, naming it and the closest allowed key.
 *
 * @example checkOptionNames('generate', { top_p: 0.9 }, ['topP']) // Error: generate: unknown option 'top_p' (did you mean 'topP'?)
 */
export function checkOptionNames(op: string, options: object, allowed: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (allowed.includes(key)) continue;
    const near = closestName(key, allowed);
    const hint = near ? ` (did you mean '${near}'?)` : ` (known: ${allowed.join(', ')})`;
    throw new Error(`${op}: unknown option '${key}'${hint}`);
  }
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
