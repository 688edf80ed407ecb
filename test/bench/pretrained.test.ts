import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { AutoModelForCausalLM } from '@lowrank/nn';
import '@lowrank/nn/node';
import { gpt2Tensors, writeRandomGpt2, type PretrainedReport } from '../../bench/pretrained.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const out = mkdtempSync(join(tmpdir(), 'lowrank-bench-pretrained-'));
after(() => rmSync(out, { recursive: true, force: true }));

describe('npm run bench -- pretrained (tiny mode)', () => {
  test('the GPT-2 shape has 124,439,808 parameters, and the written checkpoint loads', async () => {
    const count = (s: Parameters<typeof gpt2Tensors>[0]) => gpt2Tensors(s).reduce((n, [, d]) => n + d.reduce((a, b) => a * b, 1), 0);
    assert.equal(count({ n_embd: 768, n_layer: 12, n_head: 12, vocab_size: 50257, n_positions: 1024 }), 124_439_808);
    const dir = mkdtempSync(join(out, 'model-'));
    const shape = { n_embd: 16, n_layer: 1, n_head: 2, vocab_size: 40, n_positions: 8 };
    writeRandomGpt2(dir, shape);
    const model = await AutoModelForCausalLM.fromPretrained(dir);
    assert.equal(model.parameters().reduce((n, p) => n + p.size, 0), count(shape));
  });

  test('writes report.md and report.json with load and step figures', { timeout: 120_000 }, async () => {
    const args = ['--import', 'tsx', 'bench/main.ts', 'pretrained', '--size', 'tiny', '--steps', '1', '--warmup', '0', '--out', out];
    const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, timeout: 110_000, maxBuffer: 1 << 24 });
    assert.match(stdout, /fromPretrained time/);
    const run = readdirSync(out).find((d) => d.endsWith('-pretrained'));
    assert.ok(run, readdirSync(out).join(', '));
    const report = JSON.parse(readFileSync(join(out, run, 'report.json'), 'utf8')) as PretrainedReport;
    assert.equal(report.suite, 'pretrained');
    assert.ok(report.load.loadMs > 0 && report.load.peakRssBytes > 0);
    for (const r of [report.full, report.lora]) assert.ok(r.medianMs > 0 && r.peakRssBytes > 0 && Number.isFinite(r.lossFirst));
    assert.equal(report.full.trainableParams, report.parameters);
    assert.ok(report.lora.trainableParams > 0 && report.lora.trainableParams < report.full.trainableParams / 10);
  });
});
