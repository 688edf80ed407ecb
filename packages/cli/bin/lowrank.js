#!/usr/bin/env node
// Runs the TypeScript sources through tsx (the workspace's loader) until the package ships
// compiled JavaScript. In the repository, the root tsconfig.json maps @lowrank/* to the
// sources; tsx would look for it in the working directory, so from any other directory the
// imports fell through to the (unbuilt) dist/ files. Point tsx at it explicitly.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

const workspaceTsconfig = fileURLToPath(new URL('../../../tsconfig.json', import.meta.url));
register(existsSync(workspaceTsconfig) ? { tsconfig: workspaceTsconfig } : {});
const { run } = await import('../src/main.ts');
process.exitCode = await run(process.argv.slice(2));
