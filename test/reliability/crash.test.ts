// Issue 15 defect 1: kill -9 a process that saves in a loop; the directory then loads as the old
// or the new save, never a mix, and the next save removes the temp files the killed ones left.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import '@lowrank/core/node';
import { TransformerLM, gptTiny } from '@lowrank/nn';
import { loadCheckpoint } from '@lowrank/nn/node';
import { loadAdapter, loadPeftAdapter } from '@lowrank/lora/node';
import { lcg } from '../gpu/harness.ts';

const TRIALS = 30;
const here = path.dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(path.join(tmpdir(), 'lowrank-crash-'));
after(() => rmSync(root, { recursive: true, force: true }));

// A bundled child starts in ~0.1 s under plain node (tsx would take a second per trial).
const child = path.join(root, 'child.mjs');
await esbuild.build({
  entryPoints: [path.join(here, 'crash-child.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20',
  outfile: child, logLevel: 'silent', packages: 'bundle',
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
writeFileSync(path.join(root, 'package.json'), '{"type":"module"}');

const alphaOf = (g: number): number => (g % 2 === 0 ? 8 : 16);

/** Runs the child from generation `first`, kills it `delayMs` after it is ready; returns the last generation it reported saved. */
function runAndKill(format: string, dir: string, first: number, delayMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, format, dir, String(first)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let last = first - 1;
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const l of lines) {
        if (l === 'ready') setTimeout(() => p.kill('SIGKILL'), delayMs);
        else if (l.startsWith('saved ')) last = Number(l.slice(6));
      }
    });
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve(last) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

/** The generation a directory loads as, checking that its parts agree. */
async function loadedGeneration(format: string, dir: string): Promise<number> {
  const model = new TransformerLM(gptTiny());
  if (format === 'checkpoint') {
    const ck = await loadCheckpoint(path.join(dir, 'ckpt.msgpack'));
    const values = new Set(Object.values(ck.model).flatMap((t) => [...t.data]));
    assert.equal(values.size, 1, 'every parameter from one save');
    assert.equal([...values][0], ck.step);
    return ck.step;
  }
  const peft = format === 'peft' ? await loadPeftAdapter(model, dir) : await loadAdapter(model, dir);
  const values = new Set(peft.baseModel.loraLayers().flatMap(([, l]) => [...l.loraB.get('default').weight.dataSync()]));
  assert.equal(values.size, 1, 'every lora_B from one save');
  const g = [...values][0];
  assert.equal(peft.peftConfig.default.loraAlpha, alphaOf(g), `config of generation ${g} beside weights of another`);
  return g;
}

const temps = (dir: string): string[] => readdirSync(dir).filter((f) => f.includes('.tmp-'));
const bytesOf = (dir: string, files: string[]): number => files.reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);

/** Per format: trials, loads of the last reported save / of the one the kill interrupted, mixed sets, trials that left temp files (and the most bytes). */
const crashTable: Record<string, { trials: number; loadedOld: number; loadedNew: number; mixed: number; leftTemps: number; maxTempBytes: number }> = {};

// The three formats run side by side: each trial mostly waits for a child to start.
describe('kill -9 during saves', { concurrency: 3 }, () => {
  for (const format of ['peft', 'native', 'checkpoint']) {
    test(`${format}: ${TRIALS} kills, every directory loads as the old or the new save`, async () => {
      const dir = path.join(root, format);
      mkdirSync(dir, { recursive: true });
      const rnd = lcg(format.length * 7919);
      // Generation 0, saved to completion, is "the old set" of the first trial.
      assert.equal(await saveOnce(format, dir), 0);
      let g = await loadedGeneration(format, dir);
      const row = { trials: TRIALS, loadedOld: 0, loadedNew: 0, mixed: 0, leftTemps: 0, maxTempBytes: 0 };
      for (let t = 0; t < TRIALS; t++) {
        const last = await runAndKill(format, dir, g + 1, Math.floor(rnd() * 80));
        const left = temps(dir);
        if (left.length) row.leftTemps++;
        row.maxTempBytes = Math.max(row.maxTempBytes, bytesOf(dir, left));
        let now: number;
        try {
          now = await loadedGeneration(format, dir);
        } catch (err) {
          row.mixed++;
          throw err;
        }
        // The last reported save, or the one the kill interrupted (finished but not yet reported).
        assert.ok(now === Math.max(last, g) || now === Math.max(last, g) + 1, `trial ${t}: loaded generation ${now}, last saved ${last}`);
        if (now === Math.max(last, g)) row.loadedOld++;
        else row.loadedNew++;
        g = now;
      }
      crashTable[format] = row;
      console.log(`crash ${format}: ${JSON.stringify(row)}`);
      // The next save removes what the killed ones left.
      await saveOnce(format, dir, g + 1);
      assert.deepEqual(temps(dir), [], 'stale temp files removed by the next save');
    });
  }
});

/**
 * Runs the child for one complete save and lets it exit. (Killing it once `saved` is reported
 * would race its next save, whose temp files a kill leaves behind by design.) Waits for
 * `close`, not `exit`: `exit` can come before the last stdout chunk has been read.
 */
function saveOnce(format: string, dir: string, first = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, format, dir, String(first), '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => (code === 0 && out.includes(`saved ${first}`) ? resolve(first) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}
