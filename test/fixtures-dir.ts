/**
 * Where the PyTorch fixtures live: `../shared/fixtures` beside the checkout
 * when it exists (CI may put other sizes, seeds and layouts there), else the
 * copy committed under `test/fixtures` (refreshed by `npm run fixtures:sync`),
 * so a fresh clone alone still runs every test.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const shared = path.resolve(repoRoot, '../shared/fixtures');

export const fixturesDir = existsSync(shared) ? shared : path.join(repoRoot, 'test/fixtures');
