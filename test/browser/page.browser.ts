// End-to-end test of the web page in a real browser: Debian's Chromium driven
// by playwright-core (no browser download), headless, WebGL2 through
// SwiftShader. Run with `npm run test:browser` (.ci/run runs it after npm test).
// It fails, never skips, when Chromium is missing.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CharTokenizer } from '@lowrank/nn';
import { loadBrown } from '@lowrank/nn/node';
import { PageDriver } from '../../examples/web/driver.ts';
import { BUILTIN_TEXTS, startServer, type WebServer } from '../../examples/web/server.ts';
import {
  configFor, decodeBase, encodeText, loadPeft, logitsOf, loraRun, pageLora, pretrainRun, pretrainText, probeIds, tokenizerFor,
  type BaseModel, type PeftFiles,
} from '../../examples/web/src/recipe.ts';
import type { RunSummary } from '../../examples/web/src/protocol.ts';
import { hfLogits, hfLoraRun, encodeHf, loadHfBase, loadHfPeft } from '../../examples/web/src/hf.ts';
import { fixturesDir } from '../fixtures-dir.ts';
import { charTokenizerFiles } from '../pretrained/tiny-tokenizer.ts';

export const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
// Tiny on purpose: a gpu step on SwiftShader is slow.
const SIZE = { nLayer: 1, nEmbd: 16, nHead: 2, blockSize: 16, batchSize: 4, pretrainSteps: 20, cpuSteps: 6, gpuSteps: 3, rank: 4, lr: 0.005, seed: 3 };
const LOSS_TOL = 1e-5;

let server: WebServer;
let d: PageDriver;

before(async () => {
  server = await startServer({ port: 0 });
  d = await PageDriver.open(server.url);
});

after(async () => {
  await d?.close();
  await server?.close();
});

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

test('the page is cross-origin isolated and starts with the built-in sample text', async () => {
  assert.equal(await d.page.evaluate(() => crossOriginIsolated), true);
  assert.equal(await d.page.inputValue('#text'), tuneText);
  results.bundle = { startBytes: server.built.startBytes, lazy: server.built.lazy };
});

test('pre-training in the page gives the losses Node gives for the same seed', async () => {
  await d.fill({
    'n-layer': SIZE.nLayer, 'n-embd': SIZE.nEmbd, 'n-head': SIZE.nHead, 'block-size': SIZE.blockSize, 'pretrain-steps': SIZE.pretrainSteps,
    'batch-size': SIZE.batchSize, seed: SIZE.seed, rank: SIZE.rank, lr: SIZE.lr,
  });
  await d.click('#pretrain');
  const run = await d.run('pretrain');
  assert.equal(run.losses.length, SIZE.pretrainSteps);

  const text = pretrainText(loadBrown({ genres: [BUILTIN_TEXTS.base] }).text, tuneText);
  const tok = tokenizerFor([text]);
  const config = configFor(tok.vocabSize, SIZE);
  const node = pretrainRun(config, encodeText(tok, text, config.blockSize, false), { steps: SIZE.pretrainSteps, batchSize: SIZE.batchSize, lr: 3e-3, seed: SIZE.seed }, 'cpu');
  while (!node.done) node.step();
  assertClose(run.losses, node.losses, LOSS_TOL, 'pre-training losses');

  base = decodeBase(await d.download('#download-base'), 'base-model.safetensors');
  tokenizer = new CharTokenizer(base.vocab);
  assert.deepEqual(base.vocab, [...tok.vocab]);
});

async function finetuneIn(backend: 'cpu' | 'gpu' | 'webgpu', steps: number): Promise<{ run: RunSummary; adapter: PeftFiles }> {
  await d.backend(backend);
  await d.fill({ 'tune-steps': steps });
  await d.click('#finetune');
  const run = await d.run(`finetune-${backend}`);
  assert.equal(run.losses.length, steps, `fine-tuning on ${backend}: ${await d.message()}`);
  const adapter = { config: await d.download('#download-config'), weights: await d.download('#download-weights') };
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
  const peft = await loadPeft(base, adapter, 'cpu');
  const ids = probeIds(encodeText(tokenizer, tuneText, base.config.blockSize, true), base.config.blockSize);
  const node = logitsOf(peft, ids, base.config.blockSize);
  return assertClose(Array.from(await d.logits(tuneText)), Array.from(node), tol, what);
}

test('LoRA on the cpu backend: losses equal Node\'s, and Node reproduces the downloaded adapter\'s logits', async () => {
  const { run, adapter } = await finetuneIn('cpu', SIZE.cpuSteps);
  assert.equal(run.backend.mode, 'cpu');
  // The page's Worker runs the cpu kernels on a pool of nested Workers over one shared memory;
  // the losses below, equal to Node's, are then the multi-threaded ones.
  const cores = await d.page.evaluate(() => navigator.hardwareConcurrency);
  assert.equal(run.backend.threadsNote, undefined, `one thread: ${run.backend.threadsNote}`);
  assert.equal(run.backend.threads, Math.min(cores, 64), `threads ${run.backend.threads} of ${cores} cores`);
  assert.match((await d.page.textContent('#backend-mode')) ?? '', new RegExp(`cpu, ${run.backend.threads} thread`));
  const pool = await d.call<{ threads: number; sameBits: boolean; msThreads: number; msOne: number }>({ type: 'poolCheck', n: 1024 });
  assert.equal(pool.threads, run.backend.threads);
  assert.ok(pool.sameBits, 'a matmul on the pool gives the bits it gives on one thread');
  results.pool = pool;
  nodeCpuLosses = nodeFinetune(SIZE.cpuSteps);
  const lossDiff = assertClose(run.losses, nodeCpuLosses, LOSS_TOL, 'cpu fine-tuning losses');
  const logitDiff = await checkAdapter(adapter, 1e-5, 'cpu adapter logits');
  results.cpu = { threads: run.backend.threads, losses: run.losses, stepMs: run.stepMs, medianMs: median(run.stepMs.slice(1)), lossDiff, logitDiff };
});

test('LoRA on the gpu backend runs gpu.js in WebGL2 mode, with Node\'s losses', async () => {
  const { run, adapter } = await finetuneIn('gpu', SIZE.gpuSteps);
  assert.equal(run.backend.mode, 'webgl2', `gpu.js ran '${run.backend.mode}', not webgl2: ${run.backend.fallback ?? ''}`);
  assert.match((await d.page.textContent('#backend-mode')) ?? '', /webgl2/);
  assert.equal(await d.page.locator('#backend-note').isVisible(), false);
  const lossDiff = assertClose(run.losses, nodeCpuLosses.slice(0, SIZE.gpuSteps), LOSS_TOL, 'webgl2 fine-tuning losses');
  const logitDiff = await checkAdapter(adapter, 1e-4, 'webgl2 adapter logits');
  results.webgl2 = { losses: run.losses, stepMs: run.stepMs, medianMs: median(run.stepMs.slice(1)), lossDiff, logitDiff };
  mkdirSync(ARTIFACTS, { recursive: true });
  await d.page.screenshot({ path: path.join(ARTIFACTS, 'page.png'), fullPage: true });
});

test('LoRA on the webgpu backend runs gpu.js in WebGPU mode, with Node\'s losses; Node reproduces the adapter\'s logits', async () => {
  assert.equal(await d.page.locator('#backend option[value=webgpu]').isDisabled(), false, 'the page does not offer webgpu');
  const { run, adapter } = await finetuneIn('webgpu', SIZE.gpuSteps);
  assert.equal(run.backend.mode, 'webgpu');
  assert.match((await d.page.textContent('#backend-mode')) ?? '', /gpu\.js mode: webgpu/);
  assert.match((await d.page.textContent('#backend-note')) ?? '', /WebGPU adapter: .+/);
  const lossDiff = assertClose(run.losses, nodeCpuLosses.slice(0, SIZE.gpuSteps), LOSS_TOL, 'webgpu fine-tuning losses');
  const logitDiff = await checkAdapter(adapter, 1e-4, 'webgpu adapter logits');
  results.webgpu = { adapter: run.backend.adapter, losses: run.losses, stepMs: run.stepMs, medianMs: median(run.stepMs.slice(1)), lossDiff, logitDiff };
});

test('a reload brings back the text, the base model and the last adapter', async () => {
  const before = await d.logits(tuneText);
  await d.page.reload();
  await d.idle();
  assert.match(await d.message(), /restored from your last visit: text, base model, adapter/);
  assert.equal(await d.page.inputValue('#text'), tuneText);
  assert.match((await d.page.textContent('#adapter-info')) ?? '', /adapter_model\.safetensors/);
  // The restored adapter runs on cpu now; it was trained on webgpu.
  assertClose(Array.from(await d.logits(tuneText)), Array.from(before), 1e-4, 'logits after reload');
});

test('the page answers while the worker trains, and Stop ends the run between steps', async () => {
  await d.fill({ 'tune-steps': 5000 });
  await d.act(async () => {
    await d.page.click('#finetune');
    await d.page.waitForFunction(() => /step [3-9]\d*\//.test(document.getElementById('stats')?.textContent ?? ''));
    const t0 = performance.now();
    await d.page.evaluate(() => document.title);
    results.mainThreadAnswerMs = performance.now() - t0;
    await d.page.click('#stop');
  });
  const run = await d.run('finetune-cpu');
  assert.equal(run.stopped, true);
  assert.ok(run.losses.length >= 3 && run.losses.length < 5000, `${run.losses.length} steps`);
  assert.match(await d.message(), /steps \(stopped\)/);
});

test('a broken model file and text with unknown characters give clear messages; the page keeps working', async () => {
  const baseInfo = await d.page.textContent('#base-info');
  await d.act(() => d.page.setInputFiles('#base-file', { name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a model') }));
  assert.match(await d.message(), /broken\.safetensors: not a readable safetensors file/);
  assert.equal(await d.page.textContent('#base-info'), baseInfo, 'a failed load leaves the base model as it was');

  await d.page.fill('#text', `${tuneText.slice(0, 2000)} caf\u00e9 \u{1F600}`);
  await d.fill({ 'tune-steps': 2 });
  assert.equal(await d.page.inputValue('#backend'), 'cpu');
  await d.click('#finetune');
  assert.match(await d.message(), /unknown character "\u00e9" \(U\+00E9\)/);
  assert.match(await d.message(), /drop characters the base model does not know/);
  assert.match((await d.page.textContent('#text-info')) ?? '', /2 the base model does not know/);

  await d.page.check('#skip-unknown');
  await d.click('#finetune');
  assert.match(await d.message(), /LoRA fine-tuning on cpu: 2 steps/);
  await d.click('#generate');
  assert.ok(((await d.page.textContent('#generated')) ?? '').length > 'He said '.length);
  assert.deepEqual(d.errors, []);
});

test('without WebGL the gpu backend falls back to gpu.js\'s WebAssembly mode, says so, and still trains to Node\'s losses', async () => {
  const plain = await PageDriver.open(server.url, { webgl: false });
  try {
    const file = { name: 'base-model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from(await d.download('#download-base')) };
    await plain.act(() => plain.page.setInputFiles('#base-file', file));
    assert.match(await plain.message(), /loaded base-model\.safetensors/);
    await plain.backend('gpu');
    assert.match((await plain.page.textContent('#backend-mode')) ?? '', /gpu\.js mode: webasm/);
    assert.ok(await plain.page.locator('#backend-note').isVisible(), 'the fallback note is visible');
    assert.match((await plain.page.textContent('#backend-note')) ?? '', /WebGL2 is not available .* 'webasm' mode/);
    await plain.fill({ 'tune-steps': 2, 'batch-size': SIZE.batchSize, seed: SIZE.seed, rank: SIZE.rank, lr: SIZE.lr });
    await plain.click('#finetune');
    const run = await plain.run('finetune-gpu');
    assert.equal(run.backend.mode, 'webasm');
    results.webasm = { losses: run.losses, stepMs: run.stepMs, lossDiff: assertClose(run.losses, nodeCpuLosses.slice(0, 2), LOSS_TOL, 'webasm fine-tuning losses') };
    assert.deepEqual(plain.errors, []);
  } finally {
    await plain.close();
  }
});

test('a Hugging Face model folder: LoRA in the page on its default modules, Node\'s losses, the PEFT adapter reloads in Node', async () => {
  // The gpt2-tiny fixture (sizes from its config.json) with a character tokenizer beside it, as a folder.
  const folder = path.join(mkdtempSync(path.join(tmpdir(), 'lowrank-page-hf-')), 'gpt2-tiny');
  cpSync(path.join(fixturesDir, 'hf/gpt2-tiny'), folder, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(folder, 'config.json'), 'utf8')) as { vocab_size: number; eos_token_id: number };
  for (const [name, bytes] of charTokenizerFiles(config)) writeFileSync(path.join(folder, name), bytes);
  try {
    await d.act(() => d.page.setInputFiles('#hf-dir', folder));
    assert.match(await d.message(), /opened gpt2-tiny/);
    assert.match((await d.page.textContent('#base-info')) ?? '', /gpt2, \d+ layers, .*LoRA on c_attn/);
    assert.equal(await d.page.locator('#download-base').isDisabled(), true, 'a Hugging Face base is not offered as a page model file');

    const steps = 4;
    await d.backend('cpu');
    await d.fill({ 'tune-steps': steps, 'batch-size': SIZE.batchSize, seed: SIZE.seed, rank: SIZE.rank, lr: 0.01 });
    await d.click('#finetune');
    const run = await d.run('finetune-cpu');
    assert.equal(run.losses.length, steps, await d.message());

    const files = new Map(readdirSync(folder).map((f) => [f, new Uint8Array(readFileSync(path.join(folder, f)))] as [string, Uint8Array]));
    const hf = await loadHfBase(files, 'gpt2-tiny');
    const text = await d.page.inputValue('#text');
    const node = await hfLoraRun(hf, encodeHf(hf, text), { steps, batchSize: SIZE.batchSize, lr: 0.01, seed: SIZE.seed }, SIZE.rank, 'cpu');
    while (!node.done) node.step();
    const lossDiff = assertClose(run.losses, node.losses, LOSS_TOL, 'Hugging Face model LoRA losses');

    const adapter = { config: await d.download('#download-config'), weights: await d.download('#download-weights') };
    const json = JSON.parse(new TextDecoder().decode(adapter.config)) as Record<string, unknown>;
    assert.deepEqual(json.target_modules, ['c_attn']);
    assert.equal(json.fan_in_fan_out, true);
    const peft = await loadHfPeft(hf, adapter, 'cpu');
    const logitDiff = assertClose(Array.from(await d.logits(text)), Array.from(hfLogits(peft, hf, text).logits), 1e-5, 'Hugging Face adapter logits');

    await d.click('#generate');
    assert.ok(((await d.page.textContent('#generated')) ?? '').length > 'He said '.length, await d.message());
    results.hf = { model: 'gpt2-tiny', losses: run.losses, medianMs: median(run.stepMs.slice(1)), lossDiff, logitDiff };
    assert.deepEqual(d.errors, []);
  } finally {
    rmSync(path.dirname(folder), { recursive: true, force: true });
  }
});

test('timings', () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(path.join(ARTIFACTS, 'timings.json'), `${JSON.stringify(results, null, 2)}\n`);
  const cpu = results.cpu as { medianMs: number } | undefined;
  const gl = results.webgl2 as { medianMs: number } | undefined;
  const wg = results.webgpu as { medianMs: number } | undefined;
  const pool = results.pool as { threads: number; msThreads: number; msOne: number } | undefined;
  if (pool) console.log(`browser cpu pool: 1024^3 matmul ${pool.msOne.toFixed(1)} ms on 1 thread, ${pool.msThreads.toFixed(1)} ms on ${pool.threads} (same bits)`);
  console.log(`browser step times (tiny model, median after the first): cpu ${cpu?.medianMs.toFixed(1)} ms, webgl2 ${gl?.medianMs.toFixed(1)} ms, webgpu ${wg?.medianMs.toFixed(1)} ms; page JavaScript ${(server.built.startBytes / 1024).toFixed(0)} KiB at start (+ ${(Object.values(server.built.lazy).reduce((a, b) => a + b, 0) / 1024).toFixed(0)} KiB on demand); screenshot and timings.json in ${ARTIFACTS}`);
  assert.ok(cpu && gl && wg);
});
