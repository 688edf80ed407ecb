import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkArchitecture, countCodeLines } from '../../scripts/check-architecture.ts';
import { repoRoot } from '../fixtures-dir.ts';

/** A two-package tree breaking each rule once, next to code that keeps them. */
function syntheticTree(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'lowrank-arch-'));
  const files: Record<string, string> = {
    'packages/core/package.json': '{ "name": "@lowrank/core" }',
    'packages/nn/package.json': '{ "name": "@lowrank/nn" }',
    // a runtime cycle
    'packages/core/src/a.ts': "import { b } from './b.ts';\nexport const a = (): number => b() + 1;\n",
    'packages/core/src/b.ts': "import { a } from './a.ts';\nexport const b = (): number => 2;\nexport const c = a;\n",
    // a type-only back edge is erased at run time: no cycle
    'packages/core/src/c.ts': "import type { D } from './d.ts';\nexport interface C { d?: D }\n",
    'packages/core/src/d.ts': "import type { C } from './c.ts';\nexport interface D { c?: C }\nexport const runKernel = 1;\n",
    // core importing nn: against the layers
    'packages/core/src/up.ts': "import { Module } from '@lowrank/nn';\nexport const m = Module;\n",
    'packages/nn/src/index.ts': [
      "import { runKernel } from '@lowrank/core';",
      "import { Tensor } from '@lowrank/core/src/tensor.ts';",
      "import { a } from '../../core/src/a.ts';",
      '// a comment line',
      'export class Module {}',
      'export const x = (t: { data_: unknown }): unknown => [runKernel, Tensor, a, t.data_];',
      '',
    ].join('\n'),
  };
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), text);
  }
  return root;
}

const budgets = [
  { group: 'core', paths: ['packages/core/src'], budget: 100 },
  { group: 'nn', paths: ['packages/nn/src'], budget: 3 },
];

describe('check-architecture', () => {
  test('finds the cycle, the forbidden imports, the engine internals and the budget overrun of a synthetic tree', () => {
    const root = syntheticTree();
    try {
      const { problems, budgets: rows } = checkArchitecture(root, budgets);
      const has = (re: RegExp): boolean => problems.some((p) => re.test(p));
      assert.ok(has(/import cycle in package 'core' \(2 files\): packages\/core\/src\/a\.ts <-> packages\/core\/src\/b\.ts/), problems.join('\n'));
      assert.ok(!has(/c\.ts <-> .*d\.ts/), 'a type-only back edge is no cycle');
      assert.ok(has(/core\/src\/up\.ts imports '@lowrank\/nn': package 'core' may import only no other package/));
      assert.ok(has(/nn\/src\/index\.ts imports '@lowrank\/core\/src\/tensor\.ts': only the public entries/));
      assert.ok(has(/nn\/src\/index\.ts imports '\.\.\/\.\.\/core\/src\/a\.ts', a file of package 'core'/));
      assert.ok(has(/nn\/src\/index\.ts:1: runKernel is an engine internal/));
      assert.ok(has(/nn\/src\/index\.ts:6: \.data_ is an engine internal/));
      assert.ok(!has(/core\/src\/d\.ts.*engine internal/), 'core itself may name engine internals');
      assert.deepEqual(rows.find((r) => r.group === 'nn'), { group: 'nn', files: 1, lines: 5, budget: 3 });
      assert.ok(has(/^nn: 5 code lines, over its budget of 3$/));
      const cli = spawnSync(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'scripts/check-architecture.ts'), root], { encoding: 'utf8' });
      assert.equal(cli.status, 1, cli.stdout + cli.stderr);
      assert.match(cli.stderr, /architecture problem\(s\)/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('code lines leave out blank and comment-only lines and count each line of a template literal', () => {
    const text = '// a\n/** b\n * c\n */\nconst x = 1; // trailing\n\nconst t = `a\n${x}\nb`;\nconst r = /\\/\\//g;\n';
    assert.equal(countCodeLines(text), 5);
  });

  test('the repository keeps its layers and budgets', () => {
    const { problems } = checkArchitecture(repoRoot);
    assert.deepEqual(problems, []);
  });
});
