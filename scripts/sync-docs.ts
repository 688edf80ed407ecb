// Copies code regions from each tutorial's runnable .ts into its .md page, so
// the page quotes exactly the code the tests run.
//
//   in docs/NN-name.ts:   // #region setup      ...code...   // #endregion
//   in docs/NN-name.md:   <!-- region:setup -->  (replaced)  <!-- /region -->
//
// `npm run docs:sync` rewrites the pages; `npm run docs:sync -- --check` only
// reports pages that are out of date (test/docs/sync.test.ts does the same).
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DOCS_DIR = fileURLToPath(new URL('../docs/', import.meta.url));

const REGION_START = /^\s*\/\/\s*#region\s+([\w-]+)\s*$/;
const REGION_END = /^\s*\/\/\s*#endregion\b.*$/;
const MD_REGION = /<!-- region:([\w-]+) -->\n[\s\S]*?<!-- \/region -->/g;

/**
 * The named regions of a source file, each dedented, with nested region
 * markers dropped. Throws on unbalanced or duplicate markers.
 * @example extractRegions('// #region a\nconst x = 1;\n// #endregion\n').get('a') // 'const x = 1;'
 */
export function extractRegions(source: string, file = '<source>'): Map<string, string> {
  const regions = new Map<string, string[]>();
  const open: string[] = [];
  source.split('\n').forEach((line, i) => {
    const start = REGION_START.exec(line);
    if (start) {
      const name = start[1];
      if (regions.has(name)) throw new Error(`${file}:${i + 1}: region '${name}' is defined twice`);
      regions.set(name, []);
      open.push(name);
      return;
    }
    if (REGION_END.test(line)) {
      if (!open.pop()) throw new Error(`${file}:${i + 1}: #endregion without a #region`);
      return;
    }
    for (const name of open) regions.get(name)!.push(line);
  });
  if (open.length) throw new Error(`${file}: region(s) never closed: ${open.join(', ')}`);
  const out = new Map<string, string>();
  for (const [name, lines] of regions) out.set(name, dedent(lines));
  return out;
}

function dedent(lines: readonly string[]): string {
  let first = 0;
  let last = lines.length;
  while (first < last && lines[first].trim() === '') first++;
  while (last > first && lines[last - 1].trim() === '') last--;
  const body = lines.slice(first, last);
  const indent = Math.min(...body.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)![0].length));
  return body.map((l) => l.slice(Number.isFinite(indent) ? indent : 0).trimEnd()).join('\n');
}

/**
 * Fills every `<!-- region:name -->` block of a page with the matching region
 * as a fenced `ts` block. Throws when the page names a region the source lacks.
 * @example syncMarkdown(md, extractRegions(ts))
 */
export function syncMarkdown(markdown: string, regions: ReadonlyMap<string, string>, file = '<page>'): string {
  return markdown.replace(MD_REGION, (_match, name: string) => {
    const code = regions.get(name);
    if (code === undefined) {
      throw new Error(`${file}: region '${name}' is not in the source (has: ${[...regions.keys()].join(', ') || 'none'})`);
    }
    return `<!-- region:${name} -->\n\`\`\`ts\n${code}\n\`\`\`\n<!-- /region -->`;
  });
}

/** Region names a page quotes, in order. */
export function quotedRegions(markdown: string): string[] {
  return [...markdown.matchAll(MD_REGION)].map((m) => m[1]);
}

export interface PagePair {
  md: string;
  ts: string;
}

/** Every `docs/*.md` page that has a `.ts` beside it. */
export function tutorialPairs(dir = DOCS_DIR): PagePair[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => ({ md: join(dir, f), ts: join(dir, f.replace(/\.md$/, '.ts')) }))
    .filter((p) => existsSync(p.ts));
}

export interface SyncResult {
  page: string;
  /** The page as it should read. */
  expected: string;
  changed: boolean;
}

/** Computes each page's synced text; writes nothing. */
export function syncAll(dir = DOCS_DIR): SyncResult[] {
  return tutorialPairs(dir).map(({ md, ts }) => {
    const current = readFileSync(md, 'utf8');
    const expected = syncMarkdown(current, extractRegions(readFileSync(ts, 'utf8'), basename(ts)), basename(md));
    return { page: md, expected, changed: expected !== current };
  });
}

function main(argv: readonly string[]): number {
  const check = argv.includes('--check');
  const stale: string[] = [];
  for (const r of syncAll()) {
    if (!r.changed) continue;
    stale.push(basename(r.page));
    if (!check) writeFileSync(r.page, r.expected);
  }
  if (check && stale.length) {
    console.error(`docs out of sync with their .ts: ${stale.join(', ')} (run \`npm run docs:sync\`)`);
    return 1;
  }
  console.log(stale.length ? `synced ${stale.join(', ')}` : 'docs are in sync');
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
