import { nodeRequire } from '@lowrank/core';

/** What `CharTokenizer.encode` does with a character outside the vocabulary. */
export type UnknownCharPolicy = 'error' | 'skip';

/** Serialized `CharTokenizer`, small enough to store next to a checkpoint. */
export interface CharTokenizerJSON {
  type: 'char';
  vocab: string[];
}

/**
 * Character-level tokenizer: one id per Unicode code point in a sorted vocabulary.
 *
 * @example const tok = CharTokenizer.fromText('hello'); tok.decode(tok.encode('hell')) // 'hell'
 */
export class CharTokenizer {
  /** The characters, in id order (sorted by code point). */
  readonly vocab: readonly string[];
  private readonly ids: Map<number, number>;

  /** @example new CharTokenizer(['a', 'b']).encode('ba') // Int32Array [1, 0] */
  constructor(vocab: Iterable<string>) {
    this.vocab = Object.freeze([...vocab]);
    this.ids = new Map();
    this.vocab.forEach((ch, id) => {
      const cp = ch.codePointAt(0);
      if (cp === undefined || String.fromCodePoint(cp) !== ch) {
        throw new Error(`CharTokenizer: vocabulary entry ${id} (${JSON.stringify(ch)}) is not a single character`);
      }
      if (this.ids.has(cp)) throw new Error(`CharTokenizer: duplicate vocabulary character ${describeChar(ch)}`);
      this.ids.set(cp, id);
    });
  }

  /**
   * Builds the vocabulary from the characters present in `text`, sorted by code point.
   *
   * @example CharTokenizer.fromText('banana').vocab // ['a', 'b', 'n']
   */
  static fromText(text: string): CharTokenizer {
    const cps = new Set<number>();
    for (const ch of text) cps.add(ch.codePointAt(0) as number);
    return new CharTokenizer([...cps].sort((a, b) => a - b).map((cp) => String.fromCodePoint(cp)));
  }

  /** @example CharTokenizer.fromJSON(tok.toJSON()) */
  static fromJSON(json: CharTokenizerJSON | string): CharTokenizer {
    const obj: unknown = typeof json === 'string' ? JSON.parse(json) : json;
    if (!isCharTokenizerJSON(obj)) throw new Error('CharTokenizer.fromJSON: expected { type: "char", vocab: string[] }');
    return new CharTokenizer(obj.vocab);
  }

  /** Number of distinct ids. */
  get vocabSize(): number {
    return this.vocab.length;
  }

  /**
   * Text -> ids. Unknown characters throw (default) or are dropped with `{ unknown: 'skip' }`.
   *
   * @example CharTokenizer.fromText('ab').encode('abc', { unknown: 'skip' }) // Int32Array [0, 1]
   */
  encode(text: string, options: { unknown?: UnknownCharPolicy } = {}): Int32Array {
    const skip = (options.unknown ?? 'error') === 'skip';
    const out = new Int32Array(text.length);
    let n = 0;
    let pos = 0;
    for (const ch of text) {
      const id = this.ids.get(ch.codePointAt(0) as number);
      if (id !== undefined) out[n++] = id;
      else if (!skip) {
        throw new Error(
          `CharTokenizer.encode: unknown character ${describeChar(ch)} at index ${pos}; ` +
            `it is not in the vocabulary of ${this.vocabSize} characters (use { unknown: 'skip' } to drop it)`,
        );
      }
      pos += ch.length;
    }
    return n === out.length ? out : out.slice(0, n);
  }

  /**
   * Ids -> text; throws on an id outside `[0, vocabSize)`.
   *
   * @example tok.decode([0, 1, 0])
   */
  decode(ids: ArrayLike<number>): string {
    const parts = new Array<string>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const ch = Number.isInteger(id) ? this.vocab[id] : undefined;
      if (ch === undefined) {
        throw new Error(`CharTokenizer.decode: token id ${id} at position ${i} is out of range [0, ${this.vocabSize})`);
      }
      parts[i] = ch;
    }
    return parts.join('');
  }

  /** @example JSON.stringify(tok) // '{"type":"char","vocab":["a","b"]}' */
  toJSON(): CharTokenizerJSON {
    return { type: 'char', vocab: [...this.vocab] };
  }
}

function describeChar(ch: string): string {
  const cp = (ch.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0');
  return `${JSON.stringify(ch)} (U+${cp})`;
}

function isCharTokenizerJSON(x: unknown): x is CharTokenizerJSON {
  if (typeof x !== 'object' || x === null) return false;
  const o = x as { type?: unknown; vocab?: unknown };
  return o.type === 'char' && Array.isArray(o.vocab) && o.vocab.every((c) => typeof c === 'string');
}

type R50kEncoding = typeof import('gpt-tokenizer/encoding/r50k_base');

let r50k: R50kEncoding | undefined;

// NOTE: loaded lazily so that importing this module does not pay the ~150 ms it
// takes to parse the 50k-merge table unless a BPE tokenizer is actually made: in
// Node synchronously (the package's CommonJS build of the same subpath), in
// browsers by `await BpeTokenizer.load()` (a dynamic import a bundler can split off).
function loadR50k(): R50kEncoding {
  if (r50k) return r50k;
  const req = nodeRequire(import.meta.url);
  if (!req) throw new Error("BpeTokenizer.gpt2: the GPT-2 tables are not loaded yet; in a browser `await BpeTokenizer.load('gpt2')` first");
  r50k = req('gpt-tokenizer/cjs/encoding/r50k_base') as R50kEncoding;
  return r50k;
}

/** Serialized `BpeTokenizer`: only the name of the (bundled) encoding. */
export interface BpeTokenizerJSON {
  type: 'bpe';
  name: 'gpt2';
}

/**
 * Byte-level BPE, backed by the `gpt-tokenizer` package (bundled tables, no network).
 *
 * @example BpeTokenizer.gpt2().encode('Hello world') // Int32Array [15496, 995]
 */
export class BpeTokenizer {
  readonly name: 'gpt2';
  /** Number of ids, special tokens included (50257 for GPT-2). */
  readonly vocabSize: number;
  /** `<|endoftext|>`, GPT-2's only special token. */
  readonly eosToken = '<|endoftext|>';
  /** Id of `eosToken` (50256 for GPT-2). */
  readonly eosTokenId: number;
  private readonly enc: R50kEncoding;

  private constructor(name: 'gpt2', enc: R50kEncoding) {
    this.name = name;
    this.enc = enc;
    this.vocabSize = enc.vocabularySize;
    this.eosTokenId = enc.encode(this.eosToken, { allowedSpecial: 'all' })[0];
  }

  /**
   * GPT-2's byte-level BPE (OpenAI's r50k_base: 50,000 merges + `<|endoftext|>`).
   *
   * @example const tok = BpeTokenizer.gpt2(); tok.vocabSize // 50257
   */
  static gpt2(): BpeTokenizer {
    return new BpeTokenizer('gpt2', loadR50k());
  }

  /**
   * Loads the encoding's tables (a dynamic import) and makes the tokenizer; works
   * everywhere, and afterwards `gpt2()` / `fromJSON()` work synchronously in browsers too.
   *
   * @example const tok = await BpeTokenizer.load('gpt2');
   */
  static async load(name: 'gpt2' = 'gpt2'): Promise<BpeTokenizer> {
    if (name !== 'gpt2') throw new Error(`BpeTokenizer.load: unknown encoding ${JSON.stringify(name)} (known: gpt2)`);
    r50k ??= (await import('gpt-tokenizer/encoding/r50k_base')) as R50kEncoding;
    return BpeTokenizer.gpt2();
  }

  /** @example BpeTokenizer.fromJSON({ type: 'bpe', name: 'gpt2' }) */
  static fromJSON(json: BpeTokenizerJSON | string): BpeTokenizer {
    const obj: unknown = typeof json === 'string' ? JSON.parse(json) : json;
    const o = (typeof obj === 'object' && obj !== null ? obj : {}) as { type?: unknown; name?: unknown };
    if (o.type !== 'bpe' || o.name !== 'gpt2') {
      throw new Error(`BpeTokenizer.fromJSON: expected { type: "bpe", name: "gpt2" }, got ${JSON.stringify(obj)}`);
    }
    return BpeTokenizer.gpt2();
  }

  /**
   * Text -> ids. A literal `<|endoftext|>` in the text throws unless `allowSpecial` is set,
   * in which case it becomes `eosTokenId`.
   *
   * @example BpeTokenizer.gpt2().encode('a<|endoftext|>', { allowSpecial: true }) // Int32Array [64, 50256]
   */
  encode(text: string, options: { allowSpecial?: boolean } = {}): Int32Array {
    if (!options.allowSpecial) return Int32Array.from(this.enc.encode(text));
    // NOTE: gpt-tokenizer 4.0.0 finds an allowed special token only at the start of the
    // text (sticky regex in findNextSpecialToken), so split on it here instead.
    const ids: number[] = [];
    text.split(this.eosToken).forEach((piece, i) => {
      if (i > 0) ids.push(this.eosTokenId);
      for (const id of this.enc.encode(piece)) ids.push(id);
    });
    return Int32Array.from(ids);
  }

  /**
   * Ids -> text; throws on an id outside `[0, vocabSize)`.
   *
   * @example BpeTokenizer.gpt2().decode([15496, 995]) // 'Hello world'
   */
  decode(ids: ArrayLike<number>): string {
    const list = Array.from(ids);
    list.forEach((id, i) => {
      if (!(Number.isInteger(id) && id >= 0 && id < this.vocabSize)) {
        throw new Error(`BpeTokenizer.decode: token id ${id} at position ${i} is out of range [0, ${this.vocabSize})`);
      }
    });
    return this.enc.decode(list);
  }

  /** @example JSON.stringify(BpeTokenizer.gpt2()) // '{"type":"bpe","name":"gpt2"}' */
  toJSON(): BpeTokenizerJSON {
    return { type: 'bpe', name: this.name };
  }
}

/** Any tokenizer in this module. */
export type Tokenizer = CharTokenizer | BpeTokenizer;
