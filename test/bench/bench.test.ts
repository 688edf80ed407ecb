import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { PANEL_IDS } from '../../bench/chart.ts';
import type { SuiteReport } from '../../bench/report.ts';
import { expected, paramCount, stepFlops } from '../../bench/theory.ts';
import { workload } from '../../bench/common.ts';
import { TransformerLM } from '@lowrank/nn';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const out = mkdtempSync(join(tmpdir(), 'lowrank-bench-test-'));
after(() => rmSync(out, { recursive: true, force: true }));

describe('npm run bench (the default lora suite), tiny mode', () => {
  test('writes a well-formed report.md, report.json and chart.svg and prints the table', { timeout: 120_000 }, async () => {
    const args = [
      '--import', 'tsx', 'bench/main.ts', '--size', 'tiny', '--steps', '2', '--warmup', '1', '--reps', '2',
      '--w3-warmup', '1', '--brown-files', '2', '--out', out,
    ];
    const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, timeout: 110_000, maxBuffer: 1 << 24 });
    assert.match(stdout, /step time, median \(ms\)/);
    assert.match(stdout, /Targets/);

    const runs = readdirSync(out);
    assert.equal(runs.length, 1, `one timestamped folder, got ${runs.join(', ')}`);
    const dir = join(out, runs[0]);
    assert.deepEqual(readdirSync(dir).sort(), ['chart.svg', 'report.json', 'report.md']);

    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as SuiteReport;
    assert.equal(report.suite, 'lora');
    assert.equal(report.options.size, 'tiny');
    assert.equal(report.backend.backend, 'cpu');
    assert.ok(report.backend.mode && report.backend.precision);
    for (const run of [report.full, report.loraRun]) {
      assert.ok(!('error' in run), `a training run failed: ${JSON.stringify(run)}`);
      assert.equal(run.steps, 2);
      assert.equal(run.stepMs.length, 2);
      assert.ok(run.medianMs !== null && run.medianMs > 0);
      assert.ok(run.peakTensorBytes > 0 && run.peakRssBytes > 0 && run.artifact.bytes > 0);
      assert.ok(run.readbacksPerStep >= 1, 'the timed step reads the loss back');
      assert.equal(run.liveTensorDrift, 0, 'no tensors leak across steps');
    }
    if ('error' in report.full || 'error' in report.loraRun) return;
    assert.equal(report.full.trainableParams, report.full.totalParams);
    assert.ok(report.loraRun.trainableParams < report.full.trainableParams);
    assert.equal(report.loraRun.artifact.kind, 'lora-adapter');
    assert.ok(!('error' in report.w3), 'W3 ran');
    if (!('error' in report.w3)) {
      assert.deepEqual(report.w3.rows.map((r) => r.name), ['base', 'lora unmerged', 'lora merged', 'merged + unloaded']);
      assert.ok(report.w3.mergedMaxAbsDiff !== null && report.w3.mergedMaxAbsDiff < 1e-3);
    }
    assert.equal(report.targets.length, 6);
    assert.ok(report.targets.some((t) => t.name.includes('gradient checkpointing') && t.measured !== 'n/a'));
    const step = report.rows.find((r) => r.metric.startsWith('step time'));
    assert.ok(step && step.ratio !== null && step.theory !== null && step.theory > 0 && step.theory < 1);
    assert.ok(report.accounting.some((a) => a.size === 'large' && !a.checkpointing && a.ratio !== null));
    assert.ok(report.accounting.some((a) => a.size === 'large' && a.checkpointing && a.ratio !== null));

    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    for (const h of ['# LoRA vs full fine-tuning', '## Training step: full vs LoRA', '## Targets', '## W3: inference latency', '![full vs LoRA](chart.svg)']) {
      assert.ok(md.includes(h), `report.md has '${h}'`);
    }

    const svg = readFileSync(join(dir, 'chart.svg'), 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(svg.trim(), /<\/svg>$/);
    assert.equal((svg.match(/<g\b/g) ?? []).length, (svg.match(/<\/g>/g) ?? []).length, 'balanced groups');
    for (const id of PANEL_IDS) {
      const start = svg.indexOf(`<g id="panel-${id}"`);
      assert.ok(start >= 0, `panel ${id}`);
      const panel = svg.slice(start, svg.indexOf('</g>', start));
      assert.ok((panel.match(/class="bar full"/g) ?? []).length >= 1, `panel ${id} has a full bar`);
      assert.ok((panel.match(/class="bar lora"/g) ?? []).length >= 1, `panel ${id} has a LoRA bar`);
    }
  });
});

describe('bench theory', () => {
  test('parameter counts match the built model; LoRA saves dW and optimizer state', () => {
    for (const size of ['tiny', 'w2', 'large'] as const) {
      const w = workload(size, 85);
      assert.equal(paramCount(w.config), new TransformerLM(w.config, { backend: 'meta' }).numParameters(), size);
      const e = expected(w.config, w.batchSize, { r: 8, targets: ['q_proj', 'v_proj'] });
      assert.ok(e.stepRatio > 0.5 && e.stepRatio < 0.8, `${size}: step FLOP ratio ${e.stepRatio}`);
      assert.ok(e.memoryRatio > 0.25 && e.memoryRatio < 0.35, `${size}: state ratio ${e.memoryRatio}`);
    }
  });

  test('full fine-tuning is forward + dX + dW for every linear', () => {
    const w = workload('w2', 65);
    const f = stepFlops(w.config, w.batchSize);
    const c = w.config;
    const N = w.batchSize * c.blockSize;
    const linear = 2 * N * (c.nLayer * (4 * c.nEmbd * c.nEmbd + 2 * c.nEmbd * c.intermediateSize) + c.nEmbd * c.vocabSize);
    const attention = c.nLayer * 2 * 2 * w.batchSize * c.blockSize * c.blockSize * c.nEmbd;
    assert.equal(f.forward, linear + attention);
    assert.equal(f.backwardWeight, linear);
    assert.equal(f.backwardInput, linear + 2 * attention);
    assert.equal(f.lora, 0);
  });
});
