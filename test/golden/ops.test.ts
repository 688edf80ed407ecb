import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasFixtures, loadOpFixtures, opTable, registerOpFixtureTests, runOpFixtures } from './fixtures.ts';

registerOpFixtureTests('cpu');

test('every fixture op has an entry in the op table, and every case matches on cpu', { skip: hasFixtures ? false : 'no fixtures' }, () => {
  const ops = loadOpFixtures().map((f) => f.op);
  assert.deepEqual(ops.filter((op) => !(op in opTable)), []);
  const results = runOpFixtures('cpu');
  const failed = results.filter((r) => !r.ok);
  assert.ok(results.length > 0);
  assert.deepEqual(failed.map((r) => `${r.op}/${r.name}`), [], `${results.length - failed.length} of ${results.length} cases matched`);
});
