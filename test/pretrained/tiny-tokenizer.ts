/**
 * A character-level `tokenizer.json` sized to a fixture model's `config.json` (the fixtures
 * ship no tokenizer): the eos id is `<|endoftext|>`, the other ids are '\n', ' ' and printable
 * ASCII in order (then `<extra_N>` tokens if the vocabulary is larger). Characters outside it
 * are dropped by the BPE model (no unk token).
 */
export function charTokenizerFiles(config: { vocab_size: number; eos_token_id?: number | null }): Map<string, Uint8Array> {
  const size = config.vocab_size;
  const eos = config.eos_token_id ?? size - 1;
  const chars = ['\n', ' ', ...Array.from({ length: 94 }, (_, i) => String.fromCharCode(33 + i))];
  const vocab: Record<string, number> = {};
  let next = 0;
  for (let id = 0; id < size; id++) {
    vocab[id === eos ? '<|endoftext|>' : (chars[next++] ?? `<extra_${id}>`)] = id;
  }
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: eos, content: '<|endoftext|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false }],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
  const tokenizerConfig = { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', model_max_length: 1e30 };
  const enc = (x: unknown) => new TextEncoder().encode(`${JSON.stringify(x, null, 2)}\n`);
  return new Map([
    ['tokenizer.json', enc(tokenizerJson)],
    ['tokenizer_config.json', enc(tokenizerConfig)],
  ]);
}
