/**
 * `npm run bench -- gpu --browser`: the gpu suite's W2 LoRA step in Chromium
 * (the page test's binary and flags: WebGL2 on SwiftShader, a software
 * rasterizer; WebGPU on SwiftShader where its adapter answers), cpu, webgl2,
 * webgpu and webasm in one page's Worker.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page, Worker } from 'playwright-core';
import { openBundlePage } from '../examples/web/bundle-page.ts';
import { option } from './common.ts';
import type { Tokens } from './corpus.ts';
import type { Row } from './gpu-step.ts';
import type { GpuBenchWorker } from './gpu-worker.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The Worker's global, once benchWorker found it. */
type G = { gpuBench: GpuBenchWorker };

async function benchWorker(page: Page): Promise<Worker> {
  for (let i = 0; i < 600; i++) {
    for (const w of page.workers()) {
      if (await w.evaluate(() => 'gpuBench' in globalThis).catch(() => false)) return w;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('gpu bench: the page started no bench Worker within 60 s');
}

export async function runInChromium(args: readonly string[], tokens: Tokens): Promise<{ rows: Row[]; where: string }> {
  const backends = (option(args, 'backends') ?? 'cpu,gpu:webgl2,gpu:webgpu,gpu:webasm').split(',');
  const p = await openBundlePage({ 'gpu-page': path.join(HERE, 'gpu-page.ts'), 'gpu-worker': path.join(HERE, 'gpu-worker.ts') });
  try {
    const w = await benchWorker(p.page);
    w.on('console', (m) => process.stderr.write(`${m.text()}\n`));
    const ids = Array.from(tokens.ids);
    const ready = await w.evaluate(([b, t, v]) => (globalThis as unknown as G).gpuBench.prepare(b, t, v), [backends, ids, tokens.vocabSize] as const);
    for (const s of ready.skipped) process.stderr.write(`gpu bench: no row for ${s}\n`);
    const rows: Row[] = [];
    for (const name of ready.names) rows.push(await w.evaluate(([n, a]) => (globalThis as unknown as G).gpuBench.measure(n, a), [name, args] as const));
    if (p.errors.length > 0) throw new Error(`gpu bench: the page threw: ${p.errors.join('; ')}`);
    const version = p.page.context().browser()?.version() ?? (await p.page.evaluate(() => navigator.userAgent));
    const threads = ready.threadsNote ? `1 cpu thread: ${ready.threadsNote}` : `${ready.threads} cpu threads`;
    return { rows, where: `Chromium ${version}, in a page's Worker (${threads})` };
  } finally {
    await p.close();
  }
}
