// gpu.js's webgpu mode in Debian's Chromium (headless, --enable-unsafe-webgpu;
// the adapter is a software one here) on a localhost page: every kernel family
// against the cpu backend, the synchronous readers' errors, LoRA steps with
// trainStepAsync and generateAsync against cpu, and memory back to baseline.
// WebGPU is expected wherever this runs (CI uses the same Chromium); set
// LOWRANK_EXPECT_WEBGPU=0 where the adapter is known not to answer: the test
// then checks the clear error instead. Run with `npm run test:browser`.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from '../../examples/web/driver.ts';
import { fixturesDir } from '../fixtures-dir.ts';
import type { LoraFixture, WebGpuPageApi } from './webgpu-page.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');
const EXPECT_WEBGPU = process.env.LOWRANK_EXPECT_WEBGPU !== '0';
/** Parity cases per kernel family, and LoRA steps per backend. */
const RUNS = 4;
const STEPS = 4;
/** Loss tolerance against cpu, as the webgl2 page test. */
const LOSS_TOL = 1e-5;

type Api = WebGpuPageApi;

/** node:test and the Node-only test helpers, as no-ops: the page imports only the parity table. */
const stubs: esbuild.Plugin = {
  name: 'node-test-stubs',
  setup(build) {
    build.onResolve({ filter: /^node:(test|assert\/strict)$|\/modes\.ts$/ }, (a) => ({ path: a.path, namespace: 'stub' }));
    build.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({
      contents: 'export const describe = () => {}, test = () => {}, announceModes = () => {}, backendFor = () => null, modesUnderTest = []; export default {};',
      loader: 'js',
    }));
  },
};

async function bundle(): Promise<Uint8Array> {
  const r = await esbuild.build({
    entryPoints: [path.join(HERE, 'webgpu-page.ts')], bundle: true, format: 'esm', platform: 'browser', target: 'es2022',
    write: false, logLevel: 'silent', plugins: [stubs],
  });
  return r.outputFiles[0].contents;
}

let server: http.Server;
let context: BrowserContext;
let page: Page;
let userDir: string;
const pageErrors: string[] = [];
let available = false;
const results: Record<string, unknown> = {};

before(async () => {
  const js = await bundle();
  const html = '<!doctype html><meta charset="utf-8"><title>lowrank webgpu</title><body><script type="module" src="/page.js"></script></body>';
  server = http.createServer((req, res) => {
    const js_ = req.url === '/page.js';
    res.writeHead(200, { 'Content-Type': js_ ? 'text/javascript' : 'text/html', 'Cache-Control': 'no-store' }).end(js_ ? js : html);
  });
  await new Promise<void>((r) => server.listen(0, 'localhost', r));
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install it, or point LOWRANK_CHROMIUM at a Chromium binary`);
  userDir = mkdtempSync(path.join(tmpdir(), 'lowrank-webgpu-'));
  context = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
  // NOTE: http://localhost is a secure context; navigator.gpu exists only there (not on about:blank).
  await page.goto(`http://localhost:${(server.address() as AddressInfo).port}/`);
  await page.waitForSelector('body[data-state=ready]', { state: 'attached', timeout: 60_000 });
});

after(async () => {
  await context?.close();
  if (userDir) rmSync(userDir, { recursive: true, force: true });
  await new Promise((r) => server?.close(r));
});

function call<K extends keyof Api>(name: K, ...args: Parameters<Api[K]>): Promise<Awaited<ReturnType<Api[K]>>> {
  return page.evaluate(
    ([n, a]) => ((globalThis as unknown as { lowrankWebgpu: Record<string, (...x: unknown[]) => unknown> }).lowrankWebgpu[n as string](...(a as unknown[]))),
    [name, args] as const,
  ) as Promise<Awaited<ReturnType<Api[K]>>>;
}

test('the page asks for a WebGPU adapter, and says which answered', async () => {
  const p = await call('probe');
  assert.equal(p.secure, true, 'the page is not a secure context');
  available = p.available;
  results.adapter = p;
  console.log(p.available
    ? `webgpu adapter: ${p.adapter}; features: ${p.features?.join(', ') || 'none'}`
    : `webgpu did not answer here: ${p.reason}`);
  if (EXPECT_WEBGPU) {
    assert.ok(p.available, `WebGPU was expected (unset LOWRANK_EXPECT_WEBGPU=0 only where it cannot answer): ${p.reason}`);
    assert.equal(p.mode, 'webgpu');
  } else if (!p.available) {
    assert.match(await call('startError'), /gpu\.js mode 'webgpu' was requested but cannot run here \(.+\)/);
  }
});

test('every kernel family on webgpu matches cpu on random inputs', async () => {
  if (!available) return assert.ok(!EXPECT_WEBGPU);
  const r = await call('parity', RUNS);
  results.parity = r;
  assert.ok(r.families.length >= 20, `only ${r.families.length} kernel families`);
  console.log(`webgpu parity: ${r.families.length} kernel families, ${RUNS} random cases each; failing: ${r.failures.length}`);
  assert.deepEqual(r.failures, []);
  assert.equal(r.degraded, 0, 'a kernel silently ran in another gpu.js mode');
});

test('webgpu\'s 4-column matmul matches cpu (transposes, bias, broadcast batches, ragged M and K)', async () => {
  if (!available) return assert.ok(!EXPECT_WEBGPU);
  const r = await call('matmul4');
  assert.deepEqual(r.failures, []);
  assert.equal(r.dispatches.matmul4, r.cases, `not every case ran the 4-column kernel: ${JSON.stringify(r.dispatches)}`);
});

test('a cache of 2 kernels evicts while their outputs live: the outputs read back right, and every GPU buffer is freed', async () => {
  if (!available) return assert.ok(!EXPECT_WEBGPU);
  const r = await call('eviction');
  assert.ok(r.evictions >= 3, `${r.evictions} evictions`);
  assert.equal(r.got.length, r.want.length);
  r.got.forEach((v, i) => assert.ok(Math.abs(v - r.want[i]) <= 1e-5 * Math.max(1, Math.abs(r.want[i])), `value ${i}: ${v} vs cpu ${r.want[i]}`));
  assert.equal(r.deviceBuffers, 0);
});

test('the synchronous readers throw on webgpu, naming the async reader; the async ones read', async () => {
  if (!available) return assert.ok(!EXPECT_WEBGPU);
  const r = await call('readers');
  assert.match(r.errors[0], /dataSync\(\): the 'webgpu' backend \(webgpu\) reads back only asynchronously; use await t\.data\(\)/);
  assert.match(r.errors[1], /toArray\(\).*use await t\.array\(\)/);
  assert.match(r.errors[2], /item\(\).*use await t\.itemAsync\(\)/);
  assert.deepEqual(r.data, [1.5, -2, 3.25]);
  assert.deepEqual(r.array, [1.5, -2, 3.25]);
  assert.equal(r.item, 2.75);
});

test('LoRA steps with trainStepAsync on webgpu give cpu\'s losses, and generateAsync cpu\'s tokens', async () => {
  if (!available) return assert.ok(!EXPECT_WEBGPU);
  const fx = JSON.parse(readFileSync(path.join(fixturesDir, 'models/gpt-tiny-lora.json'), 'utf8')) as LoraFixture;
  const small = { config: fx.config, lora: fx.lora, stateDict: fx.stateDict, loraStateDict: fx.loraStateDict, inputIds: fx.inputIds, targets: fx.targets, loss: fx.loss };
  const gpu = await call('lora', small, 'webgpu', STEPS);
  const ref = await call('lora', small, 'cpu', STEPS);
  const gl = await call('lora', small, 'webgl2', STEPS);
  results.lora = { webgpu: gpu, cpu: ref, webgl2: gl };
  assert.ok(Math.abs(ref.losses[0] - fx.loss) < 1e-4, `cpu's first loss ${ref.losses[0]} vs PyTorch ${fx.loss}`);
  gpu.losses.forEach((l, i) => assert.ok(Math.abs(l - ref.losses[i]) <= LOSS_TOL, `step ${i + 1}: webgpu ${l} vs cpu ${ref.losses[i]}`));
  assert.ok(ref.losses[STEPS - 1] < ref.losses[0], 'the loss did not go down');
  assert.deepEqual(gpu.tokens, ref.tokens);
  const med = (xs: number[]) => [...xs.slice(1)].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  console.log(`tiny LoRA step in Chromium (median after the first): webgpu ${med(gpu.stepMs).toFixed(1)} ms (${gpu.dispatches} dispatches), ` +
    `webgl2 ${med(gl.stepMs).toFixed(1)} ms (${gl.dispatches}), cpu ${med(ref.stepMs).toFixed(1)} ms`);
});

test('disposed tensors free their GPU buffers: counters return to baseline', async () => {
  if (!available) return assert.ok(!EXPECT_WEBGPU);
  const r = await call('leaks');
  results.leaks = r;
  assert.ok(r.held.deviceBuffers >= r.before.deviceBuffers + 20, `20 kept losses hold ${r.held.deviceBuffers - r.before.deviceBuffers} GPU buffers`);
  assert.deepEqual(r.after, r.before);
  assert.deepEqual(pageErrors, []);
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(path.join(ARTIFACTS, 'webgpu.json'), `${JSON.stringify(results, null, 2)}\n`);
});
