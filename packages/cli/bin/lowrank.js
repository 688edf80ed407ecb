#!/usr/bin/env node
// Runs the TypeScript sources through tsx (the workspace's loader) until the package ships
// compiled JavaScript.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('../src/main.ts');
process.exitCode = await run(process.argv.slice(2));
