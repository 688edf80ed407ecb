// Refreshes test/fixtures from ../shared/fixtures (the PyTorch reference
// values), so that a clone without the sibling folder still runs every test.
//   npm run fixtures:sync
import { cpSync, existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../../shared/fixtures/', import.meta.url));
const to = fileURLToPath(new URL('../test/fixtures/', import.meta.url));

if (!existsSync(from)) {
  console.error(`sync-fixtures: ${from} does not exist; nothing to copy`);
  process.exit(1);
}
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
console.log(`sync-fixtures: copied ${from} -> ${to}`);
