import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  BROWN_GENRES,
  BatchSampler,
  BpeTokenizer,
  CharTokenizer,
  Xoshiro128,
  detokenizeBrownFile,
  randomInt,
  sampleBatch,
  splitTrainVal,
} from '../../packages/nn/src/data/index.ts';
import { brownDir, loadBrown } from '../../packages/nn/src/node.ts';

// Any whitespace-delimited word still ending in a common Brown tag (`said/vbd`, `Atlanta's/np$`, `./.`).
const LEFTOVER_TAG = /\S\/(at|nn|nns|np|np\$|nn-tl|vbd|vbz|vbn|vb|in|jj|cc|rb|cd|pps|ppss|dt)(?=\s|$)/;

describe('loadBrown', () => {
  test('BROWN_GENRES matches the 15 genres of the corpus CONTENTS file', () => {
    const contents = readFileSync(join(brownDir(), 'CONTENTS'), 'utf8');
    const header = contents.slice(0, contents.indexOf('LIST OF TEXTS'));
    const listed = [...header.matchAll(/^([A-R])[.:] (.+)$/gm)].map(([, letter, name]) => [
      `c${letter.toLowerCase()}`,
      name.trim().toLowerCase(),
    ]);
    assert.equal(listed.length, 15);
    assert.deepEqual(Object.keys(BROWN_GENRES), listed.map(([p]) => p));
    for (const [prefix, name] of listed) {
      assert.equal(BROWN_GENRES[prefix as keyof typeof BROWN_GENRES].replace(/\W+/g, ''), name.replace(/\W+/g, ''));
    }
  });

  test('genre file counts agree with the CONTENTS list of texts', () => {
    const contents = readFileSync(join(brownDir(), 'CONTENTS'), 'utf8');
    for (const prefix of Object.keys(BROWN_GENRES)) {
      const letter = prefix[1].toUpperCase();
      const listed = contents.match(new RegExp(`^${letter}\\d\\d\\.`, 'gm'))?.length ?? 0;
      assert.equal(loadBrown({ genres: [prefix] }).files.length, listed, prefix);
    }
  });

  test('humor (cr) has 9 files and romance (cp) 29, by prefix or by name', () => {
    assert.deepEqual(loadBrown({ genres: ['cr'] }).files, ['cr01', 'cr02', 'cr03', 'cr04', 'cr05', 'cr06', 'cr07', 'cr08', 'cr09']);
    assert.equal(loadBrown({ genres: ['humor'] }).files.length, 9);
    assert.equal(loadBrown({ genres: ['cp'] }).files.length, 29);
    assert.equal(loadBrown({ genres: ['fiction: romance'] }).files.length, 29);
    assert.equal(loadBrown({ genres: ['romance', 'humor'] }).files.length, 38);
    assert.equal(loadBrown({ genres: ['news'] }).files.length, 44);
    assert.deepEqual(loadBrown({ genres: ['cp'], maxFiles: 2 }).files, ['cp01', 'cp02']);
  });

  test('the whole corpus: 500 files, tags stripped, plausible length', () => {
    const { text, files } = loadBrown();
    assert.equal(files.length, 500);
    assert.ok(text.length > 5_000_000 && text.length < 7_000_000, `length ${text.length}`);
    assert.doesNotMatch(text, LEFTOVER_TAG);
    assert.ok(!text.includes('``'));
    assert.doesNotMatch(text, /(^|\s)''(\s|$)/m); // `''` survives only as an inch mark (`12''`)
    assert.ok(
      text.startsWith(
        'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.\n\n',
      ),
    );
  });

  test('humor text: sentences on lines, paragraphs separated by blank lines', () => {
    const { text } = loadBrown({ genres: ['cr'] });
    assert.doesNotMatch(text, LEFTOVER_TAG);
    assert.ok(text.length > 80_000 && text.length < 150_000, `length ${text.length}`);
    assert.ok(text.startsWith('It was among these that Hinkle identified a photograph of Barco!!\nFor it seems that Barco, fancying'));
    assert.match(text, /\n\nMills secured Barco's photograph/);
    assert.doesNotMatch(text, / [,.;:?!]/);
  });

  test('detokenizer: last slash splits the tag, quotes and punctuation attach', () => {
    const tagged = "\tHe/pps said/vbd ,/, ``/`` 1/2/cd and/or/cc AAb//nn '/' Met/np '/' (/( ok/jj )/) ''/'' ./.\n\n\n\tNext/ap ./.";
    assert.equal(detokenizeBrownFile(tagged), 'He said, "1/2 and/or AAb/ \'Met\' (ok)".\n\nNext.');
  });

  test('unknown genre is a clear error', () => {
    assert.throws(() => loadBrown({ genres: ['poetry'] }), /unknown Brown genre 'poetry'.*cr \(humor\)/);
    assert.throws(() => loadBrown({ maxFiles: 0 }), /maxFiles must be a positive integer/);
  });
});

describe('CharTokenizer', () => {
  const text = loadBrown({ genres: ['cr'] }).text;
  const tok = CharTokenizer.fromText(text);

  test('sorted vocabulary of the characters present', () => {
    assert.deepEqual(CharTokenizer.fromText('banana').vocab, ['a', 'b', 'n']);
    assert.deepEqual([...tok.vocab], [...new Set(text)].sort());
    assert.equal(tok.vocabSize, tok.vocab.length);
  });

  test('round-trips strings drawn from the vocabulary', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...tok.vocab), { maxLength: 200 }), (chars) => {
        const s = chars.join('');
        const ids = tok.encode(s);
        assert.ok(ids instanceof Int32Array);
        assert.equal(ids.length, chars.length);
        assert.equal(tok.decode(ids), s);
      }),
    );
    assert.equal(tok.decode(tok.encode(text)), text);
  });

  test('round-trips arbitrary Unicode, astral code points included', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1 }), (s) => {
        const t = CharTokenizer.fromText(s);
        assert.equal(t.decode(t.encode(s)), s);
      }),
    );
    const emoji = CharTokenizer.fromText('a😀b');
    assert.equal(emoji.vocabSize, 3);
    assert.deepEqual([...emoji.encode('😀a')], [2, 0]);
  });

  test('unknown characters: error naming the character, or skip', () => {
    const ab = CharTokenizer.fromText('ab');
    assert.throws(() => ab.encode('abz'), /unknown character "z" \(U\+007A\) at index 2/);
    assert.deepEqual([...ab.encode('azb', { unknown: 'skip' })], [0, 1]);
    assert.throws(() => ab.decode([0, 2]), /token id 2 at position 1 is out of range \[0, 2\)/);
  });

  test('toJSON / fromJSON', () => {
    const back = CharTokenizer.fromJSON(JSON.stringify(tok));
    assert.deepEqual(back.vocab, tok.vocab);
    assert.deepEqual(back.encode('Hello, world.'), tok.encode('Hello, world.'));
    assert.throws(() => CharTokenizer.fromJSON({ type: 'bpe' } as never), /expected \{ type: "char"/);
    assert.throws(() => new CharTokenizer(['a', 'a']), /duplicate vocabulary character "a"/);
  });
});

describe('BpeTokenizer (GPT-2 r50k_base)', () => {
  const tok = BpeTokenizer.gpt2();

  test('known ids and sizes', () => {
    assert.deepEqual([...tok.encode('Hello world')], [15496, 995]);
    assert.equal(tok.vocabSize, 50257);
    assert.equal(tok.eosTokenId, 50256);
    assert.equal(tok.decode([15496, 995]), 'Hello world');
    assert.deepEqual([...tok.encode('a<|endoftext|>', { allowSpecial: true })], [64, 50256]);
    assert.deepEqual([...tok.encode('<|endoftext|>a <|endoftext|><|endoftext|>', { allowSpecial: true })], [50256, 64, 220, 50256, 50256]);
    assert.throws(() => tok.encode('a<|endoftext|>'), /Disallowed special token/);
    assert.throws(() => tok.decode([50257]), /token id 50257 at position 0 is out of range \[0, 50257\)/);
    assert.deepEqual(BpeTokenizer.fromJSON(JSON.stringify(tok)).encode('Hello world'), tok.encode('Hello world'));
  });

  test('round-trips Brown text', () => {
    const text = loadBrown({ genres: ['cr'] }).text;
    const ids = tok.encode(text);
    assert.ok(ids instanceof Int32Array);
    assert.ok(ids.length > text.length / 6 && ids.length < text.length / 2, `${ids.length} ids`);
    assert.equal(tok.decode(ids), text);
  });

  test('round-trips arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        assert.equal(tok.decode(tok.encode(s)), s);
      }),
      { numRuns: 200 },
    );
  });
});

describe('batches', () => {
  const ids = Int32Array.from({ length: 1000 }, (_, i) => i * 7 + 3);

  test('splitTrainVal: contiguous, val is the tail', () => {
    const { train, val } = splitTrainVal(ids);
    assert.equal(train.length, 900);
    assert.equal(val.length, 100);
    assert.equal(val[0], ids[900]);
    assert.deepEqual(splitTrainVal(ids, 0).val.length, 0);
    assert.throws(() => splitTrainVal(ids, 1), /valFraction must be in \[0, 1\)/);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 500 }), fc.double({ min: 0, max: 0.99, noNaN: true }), (n, f) => {
        const { train: tr, val: va } = splitTrainVal(ids.subarray(0, n), f);
        assert.equal(tr.length + va.length, n);
      }),
    );
  });

  test('y is x shifted by one, offsets in range', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer(),
        (batchSize, blockSize, extra, seed) => {
          const data = ids.subarray(0, blockSize + 1 + extra);
          const { x, y, shape, offsets } = sampleBatch(data, { batchSize, blockSize, rng: new Xoshiro128(seed) });
          assert.deepEqual(shape, [batchSize, blockSize]);
          assert.equal(x.length, batchSize * blockSize);
          for (let b = 0; b < batchSize; b++) {
            const o = offsets[b];
            assert.ok(o >= 0 && o + blockSize + 1 <= data.length, `offset ${o}`);
            for (let t = 0; t < blockSize; t++) {
              assert.equal(x[b * blockSize + t], data[o + t]);
              assert.equal(y[b * blockSize + t], data[o + t + 1]);
            }
          }
        },
      ),
    );
  });

  test('deterministic for a seed, different for different seeds, resumable', () => {
    const a = new BatchSampler(ids, { batchSize: 4, blockSize: 16, seed: 1 });
    const b = new BatchSampler(ids, { batchSize: 4, blockSize: 16, seed: 1 });
    const c = new BatchSampler(ids, { batchSize: 4, blockSize: 16, seed: 2 });
    const first = a.next();
    assert.deepEqual(first, b.next());
    assert.notDeepEqual(first.x, c.next().x);
    const saved = a.getState();
    const next = a.next();
    a.next();
    a.setState(saved);
    assert.deepEqual(a.next(), next);
    const rng = new Xoshiro128(1);
    assert.deepEqual(sampleBatch(ids, { batchSize: 4, blockSize: 16, rng }), first);
  });

  test('every start offset is reachable (no off-by-one at the end)', () => {
    const data = Int32Array.from([10, 11, 12, 13]);
    const seen = new Set<number>();
    const rng = new Xoshiro128(3);
    for (let i = 0; i < 200; i++) seen.add(sampleBatch(data, { batchSize: 1, blockSize: 2, rng }).offsets[0]);
    assert.deepEqual([...seen].sort(), [0, 1]);
  });

  test('randomInt is uniform enough and in range', () => {
    const rng = new Xoshiro128(7);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[randomInt(rng, 6)]++;
    for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500, `counts ${counts}`);
    assert.throws(() => randomInt(rng, 0), /n must be an integer/);
  });

  test('Xoshiro128 state round-trips and rejects bad states', () => {
    const rng = new Xoshiro128(42);
    const s = rng.getState();
    const v = [rng.nextUint32(), rng.nextUint32()];
    rng.setState(s);
    assert.deepEqual([rng.nextUint32(), rng.nextUint32()], v);
    assert.ok(rng.random() >= 0 && rng.random() < 1);
    assert.throws(() => rng.setState([1, 2, 3]), /expected 4 uint32 numbers/);
    assert.throws(() => rng.setState([0, 0, 0, 0]), /all-zero state/);
  });

  test('short data and bad sizes are clear errors', () => {
    const short = Int32Array.from([1, 2, 3]);
    const rng = new Xoshiro128(0);
    assert.throws(
      () => sampleBatch(short, { batchSize: 2, blockSize: 3, rng }),
      /sampleBatch: data has 3 tokens but needs at least blockSize \+ 1 = 4/,
    );
    assert.throws(() => new BatchSampler(short, { batchSize: 1, blockSize: 8 }), /BatchSampler: data has 3 tokens/);
    assert.throws(() => sampleBatch(ids, { batchSize: 0, blockSize: 3, rng }), /batchSize must be a positive integer/);
    assert.throws(() => sampleBatch(ids, { batchSize: 1, blockSize: 2.5, rng }), /blockSize must be a positive integer/);
    const plain = new BatchSampler(ids, { batchSize: 1, blockSize: 4, rng: { nextUint32: () => 5 } });
    assert.equal(plain.next().offsets[0], 5);
    assert.throws(() => plain.getState(), /random source has no getState/);
  });
});
