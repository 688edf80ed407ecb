import { resolveConfig, type TransformerConfig } from './models/transformer.ts';

// Each preset states only what differs from its flavour's defaults, which live in resolveConfig alone.

/**
 * The config of shared/fixtures/models/gpt-tiny.json.
 * @example const model = new TransformerLM(gptTiny());
 */
export function gptTiny(): TransformerConfig {
  return resolveConfig({ flavour: 'gpt', vocabSize: 23, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16 });
}

/**
 * The config of shared/fixtures/models/llama-tiny.json.
 * @example const model = new TransformerLM(llamaTiny());
 */
export function llamaTiny(): TransformerConfig {
  return resolveConfig({ flavour: 'llama', vocabSize: 23, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, intermediateSize: 40 });
}

/**
 * The W2 workload model: GPT flavour, block 64, 4 layers, 4 heads, 128 wide, 4x MLP, tied head.
 * @example const model = new TransformerLM(w2(tokenizer.vocabSize));
 */
export function w2(vocabSize = 65): TransformerConfig {
  return resolveConfig({ flavour: 'gpt', vocabSize, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128, tieWordEmbeddings: true });
}

/**
 * GPT-2 small (124,439,808 parameters, tied head); build it on `meta` for accounting.
 * @example const model = new TransformerLM(gpt2Small(), { backend: 'meta' });
 */
export function gpt2Small(): TransformerConfig {
  return resolveConfig({ flavour: 'gpt', vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768, tieWordEmbeddings: true });
}

/**
 * LLaMA-7B shape (6,738,415,616 parameters, untied); build it on `meta`.
 * @example const model = new TransformerLM(llama7b(), { backend: 'meta' });
 */
export function llama7b(): TransformerConfig {
  return resolveConfig({ flavour: 'llama', vocabSize: 32000, blockSize: 4096, nLayer: 32, nHead: 32, nEmbd: 4096 });
}

/** Presets by name, as the CLI and benchmarks spell them. */
export const PRESETS = {
  'gpt-tiny': gptTiny,
  'llama-tiny': llamaTiny,
  w2,
  'gpt2-small': gpt2Small,
  'llama-7b': llama7b,
} as const satisfies Record<string, (vocabSize?: number) => TransformerConfig>;

export type PresetName = keyof typeof PRESETS;

/**
 * A preset's config by name. @example new TransformerLM(preset('gpt2-small'), { backend: 'meta' })
 */
export function preset(name: PresetName, vocabSize?: number): TransformerConfig {
  const make = PRESETS[name] as (v?: number) => TransformerConfig;
  if (!make) throw new Error(`preset: unknown preset '${name}' (known: ${Object.keys(PRESETS).join(', ')})`);
  return make(vocabSize);
}
