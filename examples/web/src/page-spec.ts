// Settings shared by the page and the test; no imports, so the main thread's bundle stays small.

export interface LoraSpec {
  r: number;
  alpha: number;
  targets: string[];
}

/** The adapters the page trains: rank r on the attention's q and v projections, alpha = 2r. */
export function pageLora(r: number): LoraSpec {
  return { r, alpha: 2 * r, targets: ['q_proj', 'v_proj'] };
}

/**
 * What the page pre-trains on: the built-in base text, then the built-in
 * fine-tuning sample, so the vocabulary covers both.
 */
export function pretrainText(baseText: string, sampleText: string): string {
  return `${baseText}\n${sampleText}`;
}
