// End-to-end test of the web page in a real browser: Debian's Chromium driven
// by playwright-core (no browser download), headless, WebGL2 through
// SwiftShader. Run with `npm run test:browser` (.ci/run runs it after npm test).
// It fails, never skips, when Chromium is missing.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CharTokenizer } from '@lowrank/nn';
import { loadBrown } from '@lowrank/nn/node';
import { BUILTIN_TEXTS, startServer, type WebServer } from '../../examples/web/server.ts';
import {
  decodeBase, encodeText, loadPeft, logitsOf, loraRun, pageLora, pretrainRun, pretrainText, probeIds, configFor, tokenizerFor,
  type BaseModel, type PeftFiles,
} from '../../examples/web/src/recipe.ts';
import type { RunSummary } from '../../examples/web/src/protocol.ts';

const CHROMIUM = process.env.LOWRANK_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const ARGS = [
  '--no-sandbox', '--enable-unsafe-swiftshader', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];
// Tiny on purpose: a gpu step on SwiftShader is slow.
const SIZE = { nLayer: 1, nEmbd: 16, nHead: 2, blockSize: 16, batchSize: 4, pretrainSteps: 20, cpuSteps: 6, gpuSteps: 3, rank: 4, lr: 0.005, seed: 3 };
const LOSS_TOL = 1e-5;

let server: WebServer;
let context: BrowserContext;
let page: Page;
let userDir: string;
const pageErrors: string[] = [];

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`the browser test needs Chromium at ${CHROMIUM}: install it with 'apt-get install -y chromium', or point LOWRANK_CHROMIUM at a Chromium binary`);
  }
  server = await startServer({ port: 0 });
  userDir = mkdtempSync(path.join(tmpdir(), 'lowrank-chromium-'));
  context = await chromium.launchPersistentContext(userDir, { executablePath: CHROMIUM, headless: true, args: ARGS, acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(server.url);
  await idle();
});

after(async () => {
  await context?.close();
  await server?.close();
  if (userDir) rmSync(userDir, { recursive: true, force: true });
});

async function idle(timeout = 240_000): Promise<void> {
  await page.waitForSelector('body[data-state=idle]', { timeout });
}

async function message(): Promise<string> {
  return (await page.locator('#message').isVisible()) ? ((await page.textContent('#message')) ?? '') : '';
}

/** Clicks and waits until the page has finished that action (body[data-actions] counts them). */
async function act(what: () => Promise<unknown>, timeout = 240_000): Promise<void> {
  const done = Number((await page.getAttribute('body', 'data-actions')) ?? 0);
  await what();
  await page.waitForFunction((n) => Number(document.body.dataset.actions ?? 0) > n, done, { timeout });
}

function clickAndWait(selector: string): Promise<void> {
  return act(() => page.click(selector));
}

async function runOf(key: string): Promise<RunSummary> {
  const run = await page.evaluate((k) => (window as unknown as { lowrank: { state: { runs: Record<string, unknown> } } }).lowrank.state.runs[k], key);
  assert.ok(run, `the page recorded no '${key}' run (message: ${await message()})`);
  return run as RunSummary;
}

async function downloadBytes(selector: string): Promise<Uint8Array> {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const file = await dl.path();
  return new Uint8Array(readFileSync(file));
}

async function browserLogits(text: string): Promise<Float32Array> {
  const out = await page.evaluate(async (t) => {
    const api = (window as unknown as { lowrank: { call(r: unknown): Promise<{ logits: Float32Array }> } }).lowrank;
    return Array.from((await api.call({ type: 'probe', text: t, useAdapter: true })).logits);
  }, text);
  return Float32Array.from(out);
}

function assertClose(actual: readonly number[], expected: readonly number[], tol: number, what: string): number {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, expected ${expected.length}`);
  let worst = 0;
  actual.forEach((a, i) => (worst = Math.max(worst, Math.abs(a - expected[i]))));
  assert.ok(worst <= tol, `${what}: max |browser - node| = ${worst.toExponential(2)} > ${tol} (browser ${actual.slice(0, 4)}, node ${expected.slice(0, 4)})`);
  return worst;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const tuneText = loadBrown({ genres: [BUILTIN_TEXTS.tune] }).text;
const results: Record<string, unknown> = { size: SIZE };
let base: BaseModel;
let tokenizer: CharTokenizer;
let nodeCpuLosses: number[];

async function setInputs(values: Record<string, number>): Promise<void> {
  for (const [id, v] of Object.entries(values)) await page.fill(`#${id}`, String(v));
}

test('the page is cross-origin isolated and starts with the built-in sample text', async () => {
  assert.equal(await page.evaluate(() => crossOriginIsolated), true);
  assert.equal(await page.inputValue('#text'), tuneText);
  results.jsBytes = server.jsBytes;
});

test('pre-training in the page gives the losses Node gives for the same seed', async () => {
  await setInputs({ 'n-layer': SIZE.nLayer, 'n-embd': SIZE.nEmbd, 'n-head': SIZE.nHead, 'block-size': SIZE.blockSize, 'pretrain-steps': SIZE.pretrainSteps, 'batch-size': SIZE.batchSize, seed: SIZE.seed, rank: SIZE.rank, lr: SIZE.lr });
  await clickAndWait('#pretrain');
  const run = await runOf('pretrain');
  assert.equal(run.losses.length, SIZE.pretrainSteps);

  const text = pretrainText(loadBrown({ genres: [BUILTIN_TEXTS.base] }).text, tuneText);
  const tok = tokenizerFor([text]);
  const config = configFor(tok.vocabSize, SIZE);
  const node = pretrainRun(config, encodeText(tok, text, config.blockSize, false), { steps: SIZE.pretrainSteps, batchSize: SIZE.batchSize, lr: 3e-3, seed: SIZE.seed }, 'cpu');
  while (!node.done) node.step();
  assertClose(run.losses, node.losses, LOSS_TOL, 'pre-training losses');

  base = decodeBase(await downloadBytes('#download-base'), 'base-model.safetensors');
  tokenizer = new CharTokenizer(base.vocab);
  assert.deepEqual(base.vocab, [...tok.vocab]);
});

async function finetuneIn(backend: 'cpu' | 'gpu', steps: number): Promise<{ run: RunSummary; adapter: PeftFiles }> {
  if ((await page.inputValue('#backend')) !== backend) await act(() => page.selectOption('#backend', backend));
  await setInputs({ 'tune-steps': steps });
  await clickAndWait('#finetune');
  const run = await runOf(`finetune-${backend}`);
  assert.equal(run.losses.length, steps, `fine-tuning on ${backend}: ${await message()}`);
  const adapter = { config: await downloadBytes('#download-config'), weights: await downloadBytes('#download-weights') };
  return { run, adapter };
}

function nodeFinetune(steps: number): number[] {
  const ids = encodeText(tokenizer, tuneText, base.config.blockSize, false);
  const run = loraRun(base, ids, { steps, batchSize: SIZE.batchSize, lr: SIZE.lr, seed: SIZE.seed }, pageLora(SIZE.rank), 'cpu');
  while (!run.done) run.step();
  return run.losses;
}

/** Node loads the downloaded PEFT files onto the downloaded base: its logits must be the page's. */
async function checkAdapter(adapter: PeftFiles, tol: number, what: string): Promise<number> {
  const json = JSON.parse(new TextDecoder().decode(adapter.config)) as Record<string, unknown>;
  assert.equal(json.peft_type, 'LORA');
  assert.equal(json.r, SIZE.rank);
  const peft = loadPeft(base, adapter, 'cpu');
  const ids = probeIds(encodeText(tokenizer, tuneText, base.config.blockSize, true), base.config.blockSize);
  const node = logitsOf(peft, ids, base.config.blockSize);
  return assertClose(Array.from(await browserLogits(tuneText)), Array.from(node), tol, what);
}

test('LoRA on the cpu backend: losses equal Node\'s, and Node reproduces the downloaded adapter\'s logits', async () => {
  const { run, adapter } = await finetuneIn('cpu', SIZE.cpuSteps);
  assert.equal(run.backend.mode, 'cpu');
  nodeCpuLosses = nodeFinetune(SIZE.cpuSteps);
  results.cpu = { losses: run.losses, stepMs: run.stepMs, medianMs: median(run.stepMs.slice(1)), lossDiff: assertClose(run.losses, nodeCpuLosses, LOSS_TOL, 'cpu fine-tuning losses') };
  (results.cpu as Record<string, unknown>).logitDiff = await checkAdapter(adapter, 1e-5, 'cpu adapter logits');
});

test('LoRA on the gpu backend runs gpu.js in WebGL2 mode, with Node\'s losses', async () => {
  const { run, adapter } = await finetuneIn('gpu', SIZE.gpuSteps);
  assert.equal(run.backend.mode, 'webgl2', `gpu.js ran '${run.backend.mode}', not webgl2: ${run.backend.fallback ?? ''}`);
  assert.match((await page.textContent('#backend-mode')) ?? '', /webgl2/);
  assert.equal(await page.locator('#backend-note').isVisible(), false);
  const lossDiff = assertClose(run.losses, nodeCpuLosses.slice(0, SIZE.gpuSteps), LOSS_TOL, 'webgl2 fine-tuning losses');
  const logitDiff = await checkAdapter(adapter, 1e-4, 'webgl2 adapter logits');
  results.webgl2 = { losses: run.losses, stepMs: run.stepMs, medianMs: median(run.stepMs.slice(1)), lossDiff, logitDiff };
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'page.png'), fullPage: true });
});

test('a reload brings back the text, the base model and the last adapter', async () => {
  const before = await browserLogits(tuneText);
  await page.reload();
  await idle();
  assert.match(await message(), /restored from your last visit: text, base model, adapter/);
  assert.equal(await page.inputValue('#text'), tuneText);
  assert.match((await page.textContent('#adapter-info')) ?? '', /adapter_model\.safetensors/);
  // The restored adapter runs on cpu now; it was trained on webgl2.
  assertClose(Array.from(await browserLogits(tuneText)), Array.from(before), 1e-4, 'logits after reload');
});

test('a broken model file and text with unknown characters give clear messages; the page keeps working', async () => {
  const baseInfo = await page.textContent('#base-info');
  await act(() => page.setInputFiles('#base-file', { name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a model') }));
  assert.match(await message(), /broken\.safetensors: not a readable safetensors file/);
  assert.equal(await page.textContent('#base-info'), baseInfo, 'a failed load leaves the base model as it was');

  await page.fill('#text', `${tuneText.slice(0, 2000)} caf\u00e9 \u{1F600}`);
  await setInputs({ 'tune-steps': 2 });
  assert.equal(await page.inputValue('#backend'), 'cpu');
  await clickAndWait('#finetune');
  assert.match(await message(), /unknown character "\u00e9" \(U\+00E9\)/);
  assert.match(await message(), /drop characters the base model does not know/);
  assert.match((await page.textContent('#text-info')) ?? '', /2 the base model does not know/);

  await page.check('#skip-unknown');
  await clickAndWait('#finetune');
  assert.match(await message(), /LoRA fine-tuning on cpu: 2 steps/);
  await clickAndWait('#generate');
  assert.ok(((await page.textContent('#generated')) ?? '').length > 'He said '.length);
  assert.deepEqual(pageErrors, []);
});

test('timings', () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(path.join(ARTIFACTS, 'timings.json'), `${JSON.stringify(results, null, 2)}\n`);
  const cpu = results.cpu as { medianMs: number } | undefined;
  const gl = results.webgl2 as { medianMs: number } | undefined;
  console.log(`browser step times (median after the first): cpu ${cpu?.medianMs.toFixed(1)} ms, webgl2 ${gl?.medianMs.toFixed(1)} ms; page JavaScript ${(server.jsBytes / 1024).toFixed(0)} KiB; artifacts in ${ARTIFACTS}`);
  assert.ok(cpu && gl);
});
