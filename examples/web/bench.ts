// `npm run bench:web`: the page's own sizes in headless Chromium. Pre-trains the
// default model on cpu, then times LoRA steps on cpu and on gpu.js's WebGL2 and
// WebGPU modes (both on SwiftShader here: a software renderer, not a GPU). Writes
// bench/results/web-<time>/report.json and page.png, and prints a table.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CharTokenizer } from '@lowrank/nn';
import { loadBrown } from '@lowrank/nn/node';
import { WEB_DIR } from './build.ts';
import { PageDriver } from './driver.ts';
import { BUILTIN_TEXTS, startServer } from './server.ts';
import type { RunSummary } from './src/protocol.ts';
import {
  DEFAULT_BASE, configFor, decodeBase, encodeText, loraRun, pageLora, pretrainRun, pretrainText, tokenizerFor, type Run,
} from './src/recipe.ts';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`bench:web: --${name} must be a positive integer, got '${process.argv[i + 1]}'`);
  return n;
}

const steps = { pretrain: arg('pretrain-steps', 300), cpu: arg('cpu-steps', 30), gpu: arg('gpu-steps', 10) };

/** The same steps in Node (cpu backend), for a browser/Node ratio measured under the same load. */
function nodeRows(baseBytes: Uint8Array, cpuSteps: number): Record<string, { steps: number; medianMs: number }> {
  const tuneText = loadBrown({ genres: [BUILTIN_TEXTS.tune] }).text;
  const text = pretrainText(loadBrown({ genres: [BUILTIN_TEXTS.base] }).text, tuneText);
  const tok = tokenizerFor([text]);
  const config = configFor(tok.vocabSize, DEFAULT_BASE);
  const spec = { batchSize: 16, lr: 3e-3, seed: 0 };
  const time = (run: Run): { steps: number; medianMs: number } => {
    while (!run.done) run.step();
    const rest = run.stepMs.slice(1).sort((a, b) => a - b);
    return { steps: run.stepMs.length, medianMs: rest[Math.floor(rest.length / 2)] };
  };
  const base = decodeBase(baseBytes, 'base-model.safetensors');
  return {
    'pre-train, cpu (all weights)': time(pretrainRun(config, encodeText(tok, text, config.blockSize, false), { ...spec, steps: cpuSteps }, 'cpu')),
    'LoRA, cpu': time(loraRun(base, encodeText(new CharTokenizer(base.vocab), tuneText, config.blockSize, false), { ...spec, lr: 5e-3, steps: cpuSteps }, pageLora(8), 'cpu')),
  };
}

function stats(run: RunSummary): { steps: number; firstMs: number; medianMs: number; tokensPerSecond: number } {
  const rest = run.stepMs.slice(1).sort((a, b) => a - b);
  const medianMs = rest[Math.floor(rest.length / 2)] ?? run.stepMs[0];
  return { steps: run.losses.length, firstMs: run.stepMs[0], medianMs, tokensPerSecond: (run.tokensPerStep * 1000) / medianMs };
}

const server = await startServer({ port: 0 });
const d = await PageDriver.open(server.url);
try {
  const t0 = performance.now();
  await d.fill({ 'pretrain-steps': steps.pretrain });
  await d.click('#pretrain', 600_000);
  const pretrainSeconds = (performance.now() - t0) / 1000;
  const pre = await d.run('pretrain');
  const rows: Record<string, ReturnType<typeof stats>> = { 'pre-train, cpu (all weights)': stats(pre) };
  for (const backend of ['cpu', 'gpu', 'webgpu'] as const) {
    await d.backend(backend);
    await d.fill({ 'tune-steps': backend === 'cpu' ? steps.cpu : steps.gpu });
    await d.click('#finetune', 600_000);
    const run = await d.run(`finetune-${backend}`);
    rows[`LoRA, ${run.backend.mode}`] = stats(run);
  }
  const config = await d.page.textContent('#base-info');
  const node = nodeRows(await d.download('#download-base'), steps.cpu);
  const out = path.join(WEB_DIR, '..', '..', 'bench', 'results', `web-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(out, { recursive: true });
  await d.page.screenshot({ path: path.join(out, 'page.png'), fullPage: true });
  const report = { base: config, pretrainSeconds, jsBytes: server.jsBytes, startBytes: server.built.startBytes, lazy: server.built.lazy, bundles: Object.fromEntries(server.built.files.map((f) => [f.name, f.bytes.length])), rows, node };
  writeFileSync(path.join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`base: ${config}`);
  console.log(`pre-training ${steps.pretrain} steps in the page: ${pretrainSeconds.toFixed(1)} s`);
  console.log('| run | steps | first step ms | median ms/step after it | tokens/s | Node, same steps: median ms |\n|---|---|---|---|---|---|');
  for (const [name, r] of Object.entries(rows)) {
    const n = node[name];
    console.log(`| ${name} | ${r.steps} | ${r.firstMs.toFixed(0)} | ${r.medianMs.toFixed(1)} | ${Math.round(r.tokensPerSecond).toLocaleString('en-US')} | ${n ? `${n.medianMs.toFixed(1)} (${n.steps} steps)` : ''} |`);
  }
  const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`;
  const lazy = Object.entries(server.built.lazy).map(([n, b]) => `${n} ${kib(b)}`).join(', ');
  console.log(`page JavaScript (minified): ${kib(server.built.startBytes)} loaded at start (main.js + worker.js); on demand: ${lazy}`);
  console.log(`wrote ${out}`);
} finally {
  await d.close();
  await server.close();
}
