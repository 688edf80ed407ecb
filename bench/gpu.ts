/**
 * `npm run bench -- gpu`: what a W2 LoRA training step costs the gpu backend,
 * per gpu.js mode, next to the cpu backend. Per step: gpu.js dispatches,
 * shader / wasm compiles, host-to-device uploads, device buffer bytes
 * allocated, and the step time; then the same after the sequence length
 * changes (compiles there say whether kernels are generic in their sizes).
 *
 *   xvfb-run -a -s "-screen 0 1280x1024x24" npm run bench -- gpu
 *   npm run bench -- gpu --size tiny --steps 2 --backends cpu,gpu:webasm --short 32
 *   npm run bench -- gpu --browser   (in Debian's Chromium, the page test's: cpu, WebGL2 on SwiftShader, webgpu where
 *                                     an adapter answers (SwiftShader's here) and webasm in one page's Worker;
 *                                     --backends as below, default cpu,gpu:webgl2,gpu:webgpu,gpu:webasm)
 *   (options: --size w2|medium|large|tiny, --steps 3 (timed, after 1 warm-up), --short <T> (default block/2),
 *    --backends cpu,gpu (gpu: every mode that starts here), --vocab 65, --families (per-kernel dispatches));
 *   writes bench/results/gpu[-browser]-<time>/report.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LORA, flag, fmtBytes, fmtInt, fmtMs, formatTable, intOption, option, parseSize, workload } from './common.ts';
import { randomTokens } from './corpus.ts';
import { expandGpuBackends } from './gpu-modes.ts';
import { measure, type Row } from './gpu-step.ts';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

export async function run(args: string[]): Promise<Row[]> {
  const tokens = randomTokens(intOption(args, 'vocab', 65));
  const load = loadavg();
  let rows: Row[];
  let where: string;
  if (flag(args, 'browser')) {
    const { runInChromium } = await import('./gpu-browser.ts');
    ({ rows, where } = await runInChromium(args, tokens));
  } else {
    const names = expandGpuBackends((option(args, 'backends') ?? 'cpu,gpu').split(','));
    rows = [];
    for (const n of names) rows.push(await measure(n, args, tokens, (m) => process.stderr.write(`[gpu bench ${n}] ${m}\n`)));
    where = `Node ${process.version}`;
  }
  printRows(rows, args, where);
  const out = path.join(RESULTS, `gpu${flag(args, 'browser') ? '-browser' : ''}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(out, { recursive: true });
  const report = { suite: 'gpu', where, args, size: parseSize(option(args, 'size')), loadavgStart: load, loadavg: loadavg(), rows };
  writeFileSync(path.join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  const f = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' ');
  console.log(`\nload average ${f(load)} at the start, ${f(loadavg())} at the end; wrote ${out}/report.json`);
  return rows;
}

function printRows(rows: readonly Row[], args: readonly string[], where: string): void {
  const size = parseSize(option(args, 'size'));
  const w = workload(size, intOption(args, 'vocab', 65));
  const header = [
    'backend', 'mode', 'step ms (median)', 'first step ms', 'dispatches/step', 'compiles after 1st',
    `compiles at T=${rows[0]?.shortT ?? '?'}`, 'uploads/step', 'device bytes/step', 'launches/step',
  ];
  const table = rows.map((r) => [
    r.backend, r.mode, fmtMs(r.steady.ms), fmtMs(r.first.ms), fmtInt(r.steady.dispatches), fmtInt(r.steady.compiles),
    fmtInt(r.changed.compiles), fmtInt(r.steady.uploads), fmtBytes(r.steady.textureBytes), fmtInt(r.steady.launches),
  ]);
  console.log(`\nW2-style LoRA step (r=${LORA.r} on ${LORA.targets.join(', ')}), size ${size}: batch ${w.batchSize} x ${w.config.blockSize}, ` +
    `${intOption(args, 'steps', 3)} timed steps after 1 warm-up; ${where}`);
  console.log(formatTable(header, table, [0, 1]));
  if (flag(args, 'families')) {
    for (const r of rows) {
      if (r.families.length === 0) continue;
      console.log(`\n${r.backend}: dispatches per step by kernel family (timed steps)`);
      console.log(formatTable(['family', 'per step'], r.families.map(([n, c]) => [n, c.toFixed(1)])));
    }
  }
}
