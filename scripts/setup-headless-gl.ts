// npm run setup:headless-gl: builds headless-gl (the `gl` package gpu.js uses in
// Node) from source, the opt-in step that `npm ci` skips (package.json
// allowScripts: { gl: false }). Needs the X11 headers and pkg-config:
//   apt-get install -y libxi-dev libx11-dev libxext-dev libgl1-mesa-dev pkg-config python3 make g++
// and, to run, an X display (xvfb-run -a -s "-screen 0 1280x1024x24" npm test).
// It compiles gl's bundled ANGLE: ~5 min on 2 cores, with node-gyp's output shown.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const APT = 'apt-get install -y libxi-dev libx11-dev libxext-dev libgl1-mesa-dev pkg-config python3 make g++ xvfb';

function fail(msg: string): never {
  console.error(`setup:headless-gl: ${msg}`);
  process.exit(1);
}

function glDir(): string {
  try {
    return path.dirname(require.resolve('gl/package.json'));
  } catch {
    return fail("the 'gl' package is not installed (it is gpu.js's optional dependency): run `npm ci` without --omit=optional first");
  }
}

function nodeGyp(): string {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js', { paths: [glDir()] });
  } catch {
    const bundled = process.env.npm_config_node_gyp;
    if (bundled && existsSync(bundled)) return bundled;
    return fail("node-gyp not found (gl depends on it; npm bundles one too): run this as `npm run setup:headless-gl`");
  }
}

const dir = glDir();
const binary = path.join(dir, 'build/Release/webgl.node');
if (existsSync(binary) && !process.argv.includes('--force')) {
  console.log(`setup:headless-gl: already built (${path.relative(process.cwd(), binary)}); --force rebuilds`);
  process.exit(0);
}
const pc = spawnSync('pkg-config', ['--exists', 'x11', 'xi', 'xext'], { stdio: 'ignore' });
if (pc.error || pc.status !== 0) fail(`the X11 development headers (or pkg-config) are missing; install them with:\n  ${APT}`);

const jobs = String(availableParallelism());
console.log(`setup:headless-gl: building ${path.relative(process.cwd(), dir)} with node-gyp (-j ${jobs}); this compiles ANGLE and takes minutes`);
const t0 = performance.now();
const r = spawnSync(process.execPath, [nodeGyp(), 'rebuild', '-j', jobs], { cwd: dir, stdio: 'inherit' });
if (r.status !== 0 || !existsSync(binary)) fail(`node-gyp failed (exit ${r.status}); see its output above`);
console.log(`setup:headless-gl: built ${path.relative(process.cwd(), binary)} in ${Math.round((performance.now() - t0) / 1000)} s`);
console.log('gpu.js uses it when an X display exists: xvfb-run -a -s "-screen 0 1280x1024x24" npm test');
