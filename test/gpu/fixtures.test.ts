import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hasFixtures, loadOpFixtures, runOpCase } from '../golden/fixtures.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

test('the PyTorch op fixtures are present', () => {
  assert.ok(hasFixtures, 'expected ../shared/fixtures/ops beside the checkout');
});

if (hasFixtures) {
  for (const mode of modesUnderTest) {
    describe(`golden op fixtures on gpu (${mode})`, () => {
      const name = backendFor(mode).name;
      test(`backend runs ${mode}`, () => assert.equal(backendFor(mode).mode, mode));
      for (const fixture of loadOpFixtures()) {
        test(fixture.op, () => {
          const failed = fixture.cases
            .map((c) => runOpCase(fixture.op, c, name))
            .filter((r) => !r.ok)
            .map((r) => `${r.name}: ${r.failures.join('; ')}`);
          assert.deepEqual(failed, []);
        });
      }
    });
  }
}
