import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { describe, test } from 'node:test';
import {
  extractRegions, quotedRegions, syncAll, syncMarkdown, tutorialPairs,
} from '../../scripts/sync-docs.ts';

describe('docs:sync', () => {
  test('extracts dedented regions, nested markers dropped', () => {
    const src = [
      'function f() {',
      '  // #region outer',
      '  const a = 1;',
      '  // #region inner',
      '    const b = 2;',
      '  // #endregion',
      '  // #endregion',
      '}',
    ].join('\n');
    const r = extractRegions(src);
    assert.equal(r.get('outer'), 'const a = 1;\n  const b = 2;');
    assert.equal(r.get('inner'), 'const b = 2;');
  });

  test('rejects unbalanced and duplicate markers', () => {
    assert.throws(() => extractRegions('// #region a\nx'), /never closed: a/);
    assert.throws(() => extractRegions('x\n// #endregion'), /without a #region/);
    assert.throws(() => extractRegions('// #region a\n// #endregion\n// #region a\n// #endregion'), /defined twice/);
  });

  test('fills page markers and names a missing region', () => {
    const md = 'Intro\n<!-- region:a -->\nstale\n<!-- /region -->\nOutro\n';
    const out = syncMarkdown(md, new Map([['a', 'const x = 1;']]));
    assert.equal(out, 'Intro\n<!-- region:a -->\n```ts\nconst x = 1;\n```\n<!-- /region -->\nOutro\n');
    assert.equal(syncMarkdown(out, new Map([['a', 'const x = 1;']])), out, 'idempotent');
    assert.throws(() => syncMarkdown(md, new Map()), /region 'a' is not in the source/);
  });

  test('there are tutorial pages with a .ts beside them', () => {
    assert.ok(tutorialPairs().length >= 1);
  });

  for (const { md, ts } of tutorialPairs()) {
    test(`${basename(md)} quotes ${basename(ts)} exactly (npm run docs:sync)`, () => {
      const page = readFileSync(md, 'utf8');
      assert.ok(quotedRegions(page).length > 0, `${basename(md)} quotes no region of ${basename(ts)}`);
      const result = syncAll().find((r) => r.page === md)!;
      assert.equal(result.changed, false, `${basename(md)} is out of sync with ${basename(ts)}: run \`npm run docs:sync\``);
    });
  }
});
