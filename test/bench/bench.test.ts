import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { PANEL_IDS, niceTicks } from '../../bench/chart.ts';
import type { SuiteReport } from '../../bench/report.ts';
import type { QualityReport } from '../../bench/quality-suite.ts';
import { blockLinearNames, expected, paramCount, stepFlops, stepMemory } from '../../bench/theory.ts';
import { workload } from '../../bench/common.ts';
import { evalWindowStarts } from '../../bench/corpus.ts';
import { parseSuiteArgs } from '../../bench/lora-suite.ts';
import { trainRun } from '../../bench/w2-worker.ts';
import { TransformerLM } from '@lowrank/nn';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const out = mkdtempSync(join(tmpdir(), 'lowrank-bench-test-'));
const cache = mkdtempSync(join(tmpdir(), 'lowrank-bench-cache-'));
/** Set once the lora suite test has pre-trained the tiny base into `cache` (the quality test then reuses it). */
let baseCached = false;
after(() => {
  rmSync(out, { recursive: true, force: true });
  rmSync(cache, { recursive: true, force: true });
});

describe('npm run bench (the default lora suite), tiny mode', () => {
  test('three alternating rounds by default', () => {
    assert.equal(parseSuiteArgs([]).rounds, 3);
    assert.throws(() => parseSuiteArgs(['--lr-lora', '0']), /--lr-lora must be a positive number/);
  });

  // Each run is a fresh process: seconds on an idle machine, minutes on a loaded one, hence the long timeouts.
  test('writes a well-formed report.md, report.json and chart.svg and prints the table', { timeout: 300_000 }, async () => {
    const args = [
      '--import', 'tsx', 'bench/main.ts', '--size', 'tiny', '--steps', '2', '--warmup', '1', '--reps', '2', '--rounds', '2',
      '--w3-warmup', '1', '--brown-files', '2', '--pretrain-steps', '20', '--cache', cache, '--out', out,
    ];
    const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, timeout: 290_000, maxBuffer: 1 << 24 });
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
    assert.ok(report.machine.threads >= 1 && report.machine.loadavgStart.length === 3 && report.machine.loadavg.length === 3);
    assert.equal(report.base.cached, false, 'a fresh cache: the base was pre-trained in this run');
    assert.equal(report.base.spec.steps, 20);
    baseCached = true;
    assert.equal(report.rounds.length, 2);
    assert.equal(report.timing.full.runs.length, 2);
    assert.equal(report.timing.roundRatios.length, 2);
    for (const run of report.rounds.flatMap((x) => [x.full, x.lora])) {
      assert.ok(!('error' in run), `a training run failed: ${JSON.stringify(run)}`);
      assert.equal(run.steps, 2);
      assert.equal(run.stepMs.length, 2);
      assert.ok(run.medianMs !== null && run.medianMs > 0);
      assert.ok(run.peakTensorBytes > 0 && run.peakRssBytes > 0 && run.artifact.bytes > 0);
      assert.ok(run.readbacksPerStep >= 1, 'the timed step reads the loss back');
      assert.equal(run.liveTensorDrift, 0, 'no tensors leak across steps');
      assert.ok(run.init?.endsWith('.ckpt'), 'fine-tuned from the cached base');
      assert.ok(run.valLossBefore !== null && run.valLossAfter !== null && run.valLossBefore > 0);
    }
    const befores = report.rounds.flatMap((x) => [x.full, x.lora]).map((r) => ('error' in r ? NaN : r.valLossBefore));
    assert.ok(befores.every((v) => v === befores[0]), `every run starts from the same base on the same windows: ${befores.join(', ')}`);
    if ('error' in report.full || 'error' in report.loraRun) return;
    assert.equal(report.full.trainableParams, report.full.totalParams);
    assert.ok(report.loraRun.trainableParams < report.full.trainableParams);
    assert.equal(report.loraRun.artifact.kind, 'lora-adapter');
    assert.ok(!('error' in report.w3), 'W3 ran');
    if (!('error' in report.w3)) {
      assert.deepEqual(report.w3.rows.map((r) => r.name), ['base', 'lora unmerged', 'lora merged', 'merged + unloaded']);
      assert.ok(report.w3.mergedMaxAbsDiff !== null && report.w3.mergedMaxAbsDiff < 1e-3);
    }
    assert.deepEqual(report.targets.map((t) => t.name), [
      'LoRA/full step time', 'LoRA/full peak tensor bytes', 'same, large (meta accounting)', 'adapter file', 'full checkpoint', 'W3 merged vs base latency',
    ]);
    for (const t of report.targets) assert.ok(!(t.undecided && t.pass !== null), `${t.name}: undecided means no pass/fail`);
    const step = report.rows.find((r) => r.metric.startsWith('step time'));
    assert.ok(step && step.ratio !== null && step.theory !== null && step.theory > 0 && step.theory < 1);
    const peak = report.rows.find((r) => r.metric === 'peak tensor bytes');
    const e = expected(workload('tiny', report.full.config.vocabSize).config, 4, { r: 8, targets: ['q_proj', 'v_proj'] });
    assert.ok(peak && peak.theory === e.peakRatio, 'the peak row is held against the step accounting, not the state ratio');
    assert.ok(report.rows.some((r) => r.metric.startsWith('held-out val loss after')));
    assert.ok(report.accounting.some((a) => a.size === 'large' && !a.checkpointing && a.ratio !== null));
    assert.ok(report.accounting.some((a) => a.size === 'large' && a.checkpointing && a.ratio !== null));

    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    for (const h of ['# LoRA vs full fine-tuning', '## Training step: full vs LoRA', '## Targets', '## W3: inference latency', '![full vs LoRA](chart.svg)', 'load average', 'thread']) {
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

describe('npm run bench -- quality --quick', () => {
  test('fine-tunes every setting from the cached base and writes quality.md, quality.json and quality.svg', { timeout: 200_000 }, async () => {
    const args = ['--import', 'tsx', 'bench/main.ts', 'quality', '--quick', '--cache', cache, '--out', out];
    const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, timeout: 190_000, maxBuffer: 1 << 24 });
    assert.match(stdout, /Verdict: /);
    const dirs = readdirSync(out).filter((d) => d.endsWith('-quality'));
    assert.equal(dirs.length, 1);
    const dir = join(out, dirs[0]);
    assert.deepEqual(readdirSync(dir).sort(), ['quality.json', 'quality.md', 'quality.svg']);
    const r = JSON.parse(readFileSync(join(dir, 'quality.json'), 'utf8')) as QualityReport;
    assert.equal(r.suite, 'quality');
    assert.equal(r.quick, true);
    assert.ok(r.machine.threads >= 1 && r.machine.loadavg.length === 3 && r.backend.mode);
    if (baseCached) assert.equal(r.base.cached, true, 'the base the lora suite built for the same spec is reused');
    const { ranks, targetSets, lrFull, lrLora, steps, evalEvery } = r.options;
    assert.ok(lrFull.length >= 2 && lrLora.length >= 2, 'a learning-rate search');
    assert.equal(r.runs.length, lrFull.length + ranks.length * targetSets.length * lrLora.length);
    assert.deepEqual(r.rows.map((x) => x.label), ['full', ...targetSets.flatMap((t) => ranks.map((k) => `LoRA ${t === 'qv' ? 'q,v' : 'all'} r=${k}`))]);
    for (const run of r.runs) {
      assert.equal(run.error, null, `${run.config} lr ${run.lr}`);
      assert.ok(run.valLossBefore !== null && run.valLossAfter !== null && run.trainMs !== null && run.trainMs > 0);
      assert.equal(run.valLossBefore, r.runs[0].valLossBefore, 'one base, one set of windows');
      assert.equal(run.curve.length, 1 + Math.ceil(steps / evalEvery), `${run.config}: before, every ${evalEvery} steps, after`);
      assert.ok(run.peakTensorBytes! > 0 && run.artifactBytes! > 0 && run.trainableParams! > 0);
    }
    for (const row of r.rows) {
      assert.ok(row.best, `${row.label} has a best run`);
      const tried = r.runs.filter((x) => x.config === row.label);
      assert.equal(row.best.valLossAfter, Math.min(...tried.map((x) => x.valLossAfter!)), `${row.label}: the best lr is reported`);
      if (row.mode === 'full') continue;
      assert.ok(row.timeTheory! > 0 && row.peakTheory! > 0 && row.paramsRatio! < 1);
      assert.ok(row.best.artifactBytes! < r.rows[0].best!.artifactBytes!, 'an adapter is smaller than the checkpoint');
    }
    assert.ok([true, false, null].includes(r.verdict.holds) && r.verdict.text.length > 20);
    const md = readFileSync(join(dir, 'quality.md'), 'utf8');
    for (const h of ['# What LoRA gives for what it costs', '![validation loss against time and memory](quality.svg)', "share of full's gain", '**Verdict**', 'load average', '## Every run of the learning-rate search']) {
      assert.ok(md.includes(h), `quality.md has '${h}'`);
    }
    const svg = readFileSync(join(dir, 'quality.svg'), 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.equal((svg.match(/<g\b/g) ?? []).length, (svg.match(/<\/g>/g) ?? []).length, 'balanced groups');
    for (const id of ['loss-vs-time', 'loss-vs-memory']) {
      const start = svg.indexOf(`<g id="panel-${id}"`);
      assert.ok(start >= 0, `panel ${id}`);
      const end = svg.indexOf('<g id="panel-', start + 1);
      const panel = svg.slice(start, end < 0 ? undefined : end);
      assert.equal((panel.match(/class="series/g) ?? []).length, r.rows.length, `panel ${id}: a series per setting`);
    }
  });
});

describe('bench theory', () => {
  test('parameter counts match the built model; LoRA saves dW and optimizer state', () => {
    for (const size of ['tiny', 'w2', 'large'] as const) {
      const w = workload(size, 85);
      const model = new TransformerLM(w.config, { backend: 'meta' });
      assert.equal(paramCount(w.config), model.numParameters(), size);
      for (const p of model.parameters()) p.dispose(); // live bytes stay exact for the accounting test
      const e = expected(w.config, w.batchSize, { r: 8, targets: ['q_proj', 'v_proj'] });
      assert.ok(e.stepRatio > 0.5 && e.stepRatio < 0.8, `${size}: step FLOP ratio ${e.stepRatio}`);
      assert.ok(e.memoryRatio > 0.25 && e.memoryRatio < 0.35, `${size}: state ratio ${e.memoryRatio}`);
    }
  });

  test('the step accounting matches what the engine allocates on the meta backend (within 5%)', async () => {
    for (const size of ['tiny', 'w2'] as const) {
      const c = workload(size, 85);
      const all = blockLinearNames(c.config);
      const cases = [
        { mode: 'full' as const, args: [], m: stepMemory(c.config, c.batchSize) },
        { mode: 'lora' as const, args: [], m: stepMemory(c.config, c.batchSize, { r: 8, targets: ['q_proj', 'v_proj'] }) },
        { mode: 'lora' as const, args: ['--r', '4', '--targets', 'all'], m: stepMemory(c.config, c.batchSize, { r: 4, targets: all }) },
      ];
      for (const k of cases) {
        const r = await trainRun(k.mode, ['--backend', 'meta', '--size', size, '--vocab', '85', ...k.args], () => {});
        const rel = r.peakTensorBytes / k.m.peak;
        console.log(`${size} ${k.mode} ${k.args.join(' ')}: engine ${r.peakTensorBytes} accounting ${k.m.peak} x${rel.toFixed(3)}`);
        assert.ok(rel > 0.95 && rel < 1.05, `${size} ${k.mode} ${k.args.join(' ')}: engine peak ${r.peakTensorBytes} vs accounting ${k.m.peak} (x${rel.toFixed(3)})`);
        assert.equal(r.weightBytes, k.m.weights);
        assert.equal(r.optimizerStateBytes, k.m.optimizer);
      }
    }
  });

  test('evaluation windows are fixed, in range and evenly spread', () => {
    const s = evalWindowStarts(1000, 64, 8);
    assert.deepEqual(s, evalWindowStarts(1000, 64, 8));
    assert.equal(s.length, 8);
    assert.equal(s[0], 0);
    assert.equal(s[7], 1000 - 65);
    assert.throws(() => evalWindowStarts(64, 64, 4), /cannot hold a window of 65/);
    assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
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
