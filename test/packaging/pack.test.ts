// The packages as a user gets them: build, `npm pack`, install the tarballs into
// a fresh project, then (a) train a step from a plain .mjs under plain node,
// (b) type-check a .ts consumer with a stock strict tsconfig, (c) bundle a
// browser entry with esbuild, no plugins. Dependencies come from the npm cache
// (--prefer-offline), so this runs offline once `npm ci` has filled it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as esbuild from 'esbuild';
import { buildPackage, workspacePackages } from '../../scripts/build.ts';
import { repoRoot } from '../fixtures-dir.ts';

const run = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const work = mkdtempSync(path.join(tmpdir(), 'lowrank-pack-'));
const app = path.join(work, 'app');
after(() => rmSync(work, { recursive: true, force: true }));

/** Runs a command and returns its stdout; on failure the error carries its output. */
async function sh(cmd: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd, maxBuffer: 64 << 20, env: { ...process.env, npm_config_update_notifier: 'false' } });
    return stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

const TRAIN_MJS = `
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getBackend, manualSeed, noGrad, tensor } from '@lowrank/core';
import { AdamW, BatchSampler, CharTokenizer, TransformerLM, gptTiny, trainStep } from '@lowrank/nn';
import { getPeftModel, loadPeftAdapter } from '@lowrank/lora';

const require = createRequire(import.meta.url);
const gpuJsLoaded = () => Object.keys(require.cache).some((k) => k.includes('gpu.js'));
const out = { gpuJsAtImport: gpuJsLoaded() };

manualSeed(0);
const text = 'the quick brown fox jumps over the lazy dog. '.repeat(20);
const tok = CharTokenizer.fromText(text);
const config = { ...gptTiny(), vocabSize: tok.vocabSize };
const model = new TransformerLM(config);
const peft = getPeftModel(model, { r: 2, loraAlpha: 4, targetModules: ['q_proj', 'v_proj'] });
const opt = new AdamW(peft.trainableParameters(), { lr: 1e-2 });
const sampler = new BatchSampler(tok.encode(text), { batchSize: 2, blockSize: config.blockSize, seed: 1 });
out.losses = [trainStep(peft, opt, sampler.next()).loss, trainStep(peft, opt, sampler.next()).loss];

// Directories need the Node entry (it installs the file system); then a reload gives the same logits.
await import('@lowrank/lora/node');
const dir = join(mkdtempSync(join(tmpdir(), 'lowrank-consumer-')), 'adapter');
await peft.savePretrained(dir);
manualSeed(0);
const again = await loadPeftAdapter(new TransformerLM(config), dir);
const ids = tensor(tok.encode('the lazy dog').slice(0, config.blockSize), { shape: [1, 8], dtype: 'int32' });
const a = noGrad(() => peft.forward(ids).logits.toArray().flat(2));
const b = noGrad(() => again.forward(ids).logits.toArray().flat(2));
out.reloadMaxDiff = Math.max(...a.map((v, i) => Math.abs(v - b[i])));

const gpu = getBackend('gpu');
out.gpuMode = gpu.mode;
out.gpuSum = tensor([1, 2, 3], { backend: 'gpu' }).add(tensor([10, 20, 30], { backend: 'gpu' })).toArray();
out.gpuJsAfterGpu = gpuJsLoaded();
console.log(JSON.stringify(out));
`;

// A Node project in TypeScript: both entries of every package (it has @types/node, as Node projects do).
const NODE_CONSUMER_TS = `
import { tensor, type Tensor, type Backend, initBackend } from '@lowrank/core';
import { writeFileAtomic } from '@lowrank/core/node';
import { TransformerLM, gptTiny, serializeCheckpoint, type TransformerConfig } from '@lowrank/nn';
import { loadCheckpoint, saveCheckpoint } from '@lowrank/nn/node';
import { getPeftModel, type AdapterFiles, type PeftModel } from '@lowrank/lora';
import { savePretrained } from '@lowrank/lora/node';

const config: TransformerConfig = gptTiny();
const model = new TransformerLM(config);
const peft: PeftModel<TransformerLM> = getPeftModel(model, { r: 2, targetModules: ['q_proj'] });
const files: AdapterFiles = peft.toFiles('peft');
const weights: Uint8Array = files['adapter_model.safetensors'];
const x: Tensor = tensor([[1, 2]]);
const bytes: Uint8Array = serializeCheckpoint({ model, step: 0 });
export async function demo(): Promise<number> {
  const gpu: Backend = await initBackend('gpu');
  await writeFileAtomic('out.bin', bytes);
  await saveCheckpoint('ckpt.msgpack', { model, step: 1 });
  await savePretrained(peft, 'out');
  const step: number = (await loadCheckpoint('ckpt.msgpack')).step;
  return step + weights.byteLength + x.size + gpu.bytesPerElement('float32');
}
`;

// A browser project in TypeScript: the main entries only, DOM types and no Node types at all.
const BROWSER_CONSUMER_TS = `
import { initBackend, type Tensor } from '@lowrank/core';
import { BpeTokenizer, TransformerLM, gptTiny, parseCheckpoint, serializeCheckpoint } from '@lowrank/nn';
import { PeftModel, getPeftModel } from '@lowrank/lora';

export async function page(input: HTMLInputElement): Promise<Blob> {
  await initBackend('gpu');
  const tok: BpeTokenizer = await BpeTokenizer.load('gpt2');
  const model = new TransformerLM(gptTiny());
  const files = Object.fromEntries([...(input.files ?? [])].map((f): [string, File] => [f.name, f]));
  const peft: PeftModel<TransformerLM> = await PeftModel.fromPretrained(model, files);
  const again = getPeftModel(new TransformerLM(gptTiny()), { r: 2, targetModules: ['q_proj'] });
  const logits: Tensor = again.forward(new TransformerLM(gptTiny()).parameters()[0]).logits;
  parseCheckpoint(serializeCheckpoint({ model, step: tok.vocabSize + logits.size }));
  return new Blob([peft.toFiles('peft')['adapter_model.safetensors']]);
}
`;

// A browser page's entry: only the main entries, and what a page does with them.
const BROWSER_MJS = `
import { initBackend, manualSeed } from '@lowrank/core';
import { AdamW, BatchSampler, CharTokenizer, TransformerLM, gptTiny, trainStep } from '@lowrank/nn';
import { getPeftModel } from '@lowrank/lora';

export async function fineTune(text, useGpu) {
  const backend = await initBackend(useGpu ? 'gpu' : 'cpu');
  manualSeed(0);
  const tok = CharTokenizer.fromText(text);
  const model = new TransformerLM({ ...gptTiny(), vocabSize: tok.vocabSize }).to(backend.name);
  const peft = getPeftModel(model, { r: 4, targetModules: ['q_proj', 'v_proj'] });
  const opt = new AdamW(peft.trainableParameters());
  const loss = trainStep(peft, opt, new BatchSampler(tok.encode(text), { batchSize: 2, blockSize: 8 }).next()).loss;
  return { loss, mode: backend.mode, adapter: new Blob([peft.toFiles('peft')['adapter_model.safetensors']]) };
}
`;

const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`;

describe('packages as a user installs them', () => {
  before(async () => {
    const pkgs = workspacePackages();
    for (const p of pkgs) {
      const errors = buildPackage(p);
      assert.equal(errors, '', `${p.name} does not build:\n${errors}`);
    }
    const tgz = path.join(work, 'tgz');
    mkdirSync(tgz);
    mkdirSync(app);
    await sh(npm, ['pack', '--silent', '--pack-destination', tgz, ...pkgs.flatMap((p) => ['--workspace', p.name])], repoRoot);
    const tarballs = readdirSync(tgz).map((f) => path.join(tgz, f));
    assert.equal(tarballs.length, pkgs.length, `one tarball per package: ${tarballs.join(', ')}`);
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // --omit=optional: gpu.js's optional headless-gl is not wanted here (and never built: --ignore-scripts).
    // @types/node at the version the repository uses, so the npm cache has it.
    const typesNode = (JSON.parse(readFileSync(path.join(repoRoot, 'node_modules/@types/node/package.json'), 'utf8')) as { version: string }).version;
    await sh(npm, [
      'install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--omit=optional', '--loglevel=error',
      ...tarballs, `@types/node@${typesNode}`,
    ], app);
  });

  test('the tarballs hold built JavaScript and declarations, no sources', () => {
    for (const name of ['core', 'nn', 'lora']) {
      const dir = path.join(app, 'node_modules/@lowrank', name);
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
      assert.deepEqual(Object.keys(pkg.exports), ['.', './node', './package.json'], name);
      const files = readdirSync(dir, { recursive: true }).map(String);
      assert.ok(files.includes(path.join('dist', 'index.js')) && files.includes(path.join('dist', 'node.d.ts')), `${name}: ${files.slice(0, 5).join(', ')}`);
      assert.deepEqual(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), [], `${name} ships TypeScript sources`);
    }
  });

  test('(a) plain node imports, trains LoRA steps, saves and reloads an adapter; gpu.js loads only for the gpu backend', async () => {
    writeFileSync(path.join(app, 'train.mjs'), TRAIN_MJS);
    const lines = (await sh(process.execPath, ['train.mjs'], app)).trim().split('\n');
    const out = JSON.parse(lines.at(-1)!) as {
      gpuJsAtImport: boolean; losses: number[]; reloadMaxDiff: number; gpuMode: string; gpuSum: number[]; gpuJsAfterGpu: boolean;
    };
    assert.equal(out.gpuJsAtImport, false, 'importing the packages loaded gpu.js');
    assert.ok(out.losses.every((l) => Number.isFinite(l) && l > 0), `losses ${out.losses}`);
    assert.ok(out.reloadMaxDiff <= 1e-6, `reloaded adapter differs by ${out.reloadMaxDiff}`);
    assert.deepEqual(out.gpuSum, [11, 22, 33]);
    assert.equal(out.gpuJsAfterGpu, true);
    console.log(`plain node: losses ${out.losses.map((l) => l.toFixed(4)).join(', ')}, gpu backend mode ${out.gpuMode}`);
  });

  test('(b) .ts consumers type-check with stock strict tsconfigs (Node: both entries; browser: main entries, no Node types)', async () => {
    const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
    const strict = { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false };
    writeFileSync(path.join(app, 'node-consumer.ts'), NODE_CONSUMER_TS);
    writeFileSync(path.join(app, 'tsconfig.node.json'), JSON.stringify({ compilerOptions: { ...strict, types: ['node'] }, files: ['node-consumer.ts'] }));
    await sh(process.execPath, [tsc, '-p', 'tsconfig.node.json'], app);
    writeFileSync(path.join(app, 'browser-consumer.ts'), BROWSER_CONSUMER_TS);
    writeFileSync(path.join(app, 'tsconfig.browser.json'), JSON.stringify({
      compilerOptions: { ...strict, lib: ['ES2022', 'DOM', 'DOM.Iterable'], types: [] }, files: ['browser-consumer.ts'],
    }));
    await sh(process.execPath, [tsc, '-p', 'tsconfig.browser.json'], app);
  });

  test('(c) a browser entry bundles with esbuild, no plugins; no node:* module reaches it', async () => {
    writeFileSync(path.join(app, 'browser.mjs'), BROWSER_MJS);
    const sizes: string[] = [];
    for (const minify of [false, true]) {
      const r = await esbuild.build({
        absWorkingDir: app, entryPoints: ['browser.mjs'], bundle: true, platform: 'browser', format: 'esm',
        target: 'es2022', minify, write: false, metafile: true, logLevel: 'silent', outfile: 'out/browser.js',
      });
      assert.deepEqual(r.errors, []);
      const inputs = Object.keys(r.metafile.inputs);
      assert.deepEqual(inputs.filter((f) => f.startsWith('node:') || f.includes('/node/') || f.endsWith('/node.js')), []);
      assert.ok(inputs.some((f) => f.includes('gpu.js/dist/gpu-browser')), "gpu.js's browser build is in the bundle");
      sizes.push(`${minify ? 'minified' : 'plain'} ${kib(r.outputFiles[0].contents.length)}`);
      if (minify) {
        // Split: what a page loads before anyone asks for the gpu backend.
        const s = await esbuild.build({
          absWorkingDir: app, entryPoints: ['browser.mjs'], bundle: true, platform: 'browser', format: 'esm', splitting: true,
          target: 'es2022', minify, write: false, logLevel: 'silent', outdir: 'out-split',
        });
        const entry = s.outputFiles.find((f) => path.basename(f.path) === 'browser.js')!;
        sizes.push(`split: entry ${kib(entry.contents.length)} + ${s.outputFiles.length - 1} lazy chunk(s) ${kib(s.outputFiles.reduce((n, f) => n + f.contents.length, 0) - entry.contents.length)}`);
      }
    }
    console.log(`browser bundle (core + nn + lora + gpu.js): ${sizes.join('; ')}`);
  });
});
