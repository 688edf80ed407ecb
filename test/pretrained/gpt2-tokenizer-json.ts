/**
 * Builds GPT-2's `tokenizer.json` (byte-level BPE, as the Hub serves it) from the rank table
 * that `gpt-tokenizer` ships, so the Hugging Face tokenizer can be checked against an
 * implementation that shares none of its code.
 */
import { createRequire } from 'node:module';

type RankEntry = string | number[];

const EOT = '<|endoftext|>';

/** GPT-2's byte -> printable character table (bytes that print map to themselves). */
export function byteToUnicode(): string[] {
  const table = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCodePoint(printable ? b : next++);
  }
  return table;
}

/** The merges that rebuild each rank-r token from two tokens of lower rank. */
function mergesFromRanks(tokens: readonly string[], rank: ReadonlyMap<string, number>): [string, string][] {
  const merges: [string, string][] = [];
  for (let r = 0; r < tokens.length; r++) {
    const chars = Array.from(tokens[r]);
    if (chars.length < 2) continue;
    // Run BPE on the token with only lower-ranked merges: what is left is its last merge.
    let parts = chars;
    for (;;) {
      let best = -1;
      let bestRank = r;
      for (let i = 0; i + 1 < parts.length; i++) {
        const rr = rank.get(parts[i] + parts[i + 1]);
        if (rr !== undefined && rr < bestRank) [best, bestRank] = [i, rr];
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
    }
    if (parts.length !== 2) throw new Error(`gpt2 tokenizer.json: token ${r} does not split into one merge`);
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}

/** tokenizer.json (object) and tokenizer_config.json for GPT-2, built from gpt-tokenizer's r50k ranks. */
export function gpt2TokenizerFiles(): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } {
  const ranks = (createRequire(import.meta.url)('gpt-tokenizer/cjs/bpeRanks/r50k_base') as { default: RankEntry[] }).default;
  const toUnicode = byteToUnicode();
  const encoder = new TextEncoder();
  const tokens = ranks.map((entry) => {
    const bytes = typeof entry === 'string' ? encoder.encode(entry) : Uint8Array.from(entry);
    return Array.from(bytes, (b) => toUnicode[b]).join('');
  });
  const rank = new Map(tokens.map((t, i) => [t, i]));
  const vocab: Record<string, number> = Object.fromEntries(tokens.map((t, i) => [t, i]));
  const eotId = tokens.length;
  vocab[EOT] = eotId;
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: eotId, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: mergesFromRanks(tokens, rank).map(([a, b]) => `${a} ${b}`),
    },
  };
  const tokenizerConfig = {
    add_prefix_space: false,
    bos_token: EOT,
    eos_token: EOT,
    unk_token: EOT,
    model_max_length: 1024,
    tokenizer_class: 'GPT2Tokenizer',
  };
  return { tokenizerJson, tokenizerConfig };
}
