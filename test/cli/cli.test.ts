import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { noGrad, tensor, tidy } from '@lowrank/core';
import { AutoModelForCausalLM } from '@lowrank/nn';
import { PeftModel } from '@lowrank/lora';
import { run, type Io } from 'lowrank';
import { fixturesDir, repoRoot } from '../fixtures-dir.ts';
import { charTokenizerFiles } from '../pretrained/tiny-tokenizer.ts';

/** Collects what a command prints. */
function capture(): Io & { lines: string[]; errors: string[]; progressLines: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  const progressLines: string[] = [];
  return { lines, errors, progressLines, out: (l) => lines.push(l), err: (l) => errors.push(l), progress: (l) => progressLines.push(l) };
}

describe('lowrank CLI, end to end on the gpt2-tiny fixture', () => {
  let work: string;
  let model: string;
  let data: string;
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'lowrank-cli-'));
    model = path.join(work, 'gpt2-tiny');
    await cp(path.join(fixturesDir, 'hf/gpt2-tiny'), model, { recursive: true });
    const config = JSON.parse(await readFile(path.join(model, 'config.json'), 'utf8')) as { vocab_size: number; eos_token_id: number };
    for (const [name, bytes] of charTokenizerFiles(config)) await writeFile(path.join(model, name), bytes);
    data = path.join(work, 'train.jsonl');
    const records = Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: `The jury said ${i} times: no evidence of any irregularities took place.` }));
    await writeFile(data, `${records.join('\n')}\n`);
  });
  after(() => rm(work, { recursive: true, force: true }));

  it('finetune -> adapter -> generate -> merge -> reload', async () => {
    const adapter = path.join(work, 'adapter');
    const io = capture();
    const code = await run(['finetune', '--model', model, '--data', data, '--r', '4', '--alpha', '8', '--targets', 'c_attn',
      '--steps', '6', '--lr', '0.01', '--batch-size', '4', '--seq-len', '16', '--out', adapter], io);
    assert.equal(code, 0, io.errors.join('\n'));
    const text = io.lines.join('\n');
    assert.match(text, /trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}/);
    const before = Number(/eval loss before: ([\d.]+)/.exec(text)?.[1]);
    const afterLoss = Number(/eval loss after: ([\d.]+)/.exec(text)?.[1]);
    assert.ok(afterLoss < before, `eval loss ${before} -> ${afterLoss}\n${text}`);
    assert.ok(io.progressLines.some((l) => /step 6\/6/.test(l)), io.progressLines.join('\n'));
    const adapterFiles = await readdir(adapter);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) assert.ok(adapterFiles.includes(f), adapterFiles.join(', '));
    const cfg = JSON.parse(await readFile(path.join(adapter, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 8);
    assert.deepEqual(cfg.target_modules, ['c_attn']);
    assert.equal(cfg.fan_in_fan_out, true);

    const gen = capture();
    assert.equal(await run(['generate', '--model', model, '--adapter', adapter, '--prompt', 'The jury', '--max-new-tokens', '8'], gen), 0, gen.errors.join('\n'));
    assert.ok(gen.lines[0].startsWith('The jury'));

    const merged = path.join(work, 'merged');
    const mio = capture();
    assert.equal(await run(['merge', '--model', model, '--adapter', adapter, '--out', merged], mio), 0, mio.errors.join('\n'));
    const files = (await readdir(merged)).sort();
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) assert.ok(files.includes(f), files.join(', '));

    // The merged model's logits equal base + adapter's; its greedy text equals what generate printed.
    const ids = tensor([[1, 2, 3, 4, 5, 6]], { dtype: 'int32' });
    const logits = (m: { forward(x: typeof ids): { logits: typeof ids } }) => tidy(() => noGrad(() => m.forward(ids).logits.dataSync() as Float32Array));
    const withAdapter = logits(await PeftModel.fromPretrained(await AutoModelForCausalLM.fromPretrained(model), adapter));
    const reloaded = logits(await AutoModelForCausalLM.fromPretrained(merged));
    const diff = withAdapter.reduce((m, v, i) => Math.max(m, Math.abs(v - reloaded[i])), 0);
    assert.ok(diff < 1e-4, `merged vs adapter logits differ by ${diff}`);
    const gen2 = capture();
    assert.equal(await run(['generate', '--model', merged, '--prompt', 'The jury', '--max-new-tokens', '8'], gen2), 0, gen2.errors.join('\n'));
    assert.equal(gen2.lines[0], gen.lines[0]);
  });

  it('inspect: architecture, parameters, the PEFT line and full vs LoRA memory', async () => {
    const io = capture();
    assert.equal(await run(['inspect', model, '--r', '8'], io), 0, io.errors.join('\n'));
    const text = io.lines.join('\n');
    assert.match(text, /GPT2LMHeadModel \(model_type gpt2\)/);
    assert.match(text, /LoRA r=8 on c_attn: trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%/);
    assert.match(text, /optimizer \(AdamW m, v\)/);
    const llama = capture();
    assert.equal(await run(['inspect', path.join(fixturesDir, 'hf/llama-tiny')], llama), 0, llama.errors.join('\n'));
    assert.match(llama.lines.join('\n'), /grouped-query/);
    assert.match(llama.lines.join('\n'), /LoRA r=8 on q_proj, v_proj/);
  });

  it('unknown flags and commands get a suggestion; missing files name the file', async () => {
    const cases: [string[], RegExp][] = [
      [['finetune', '--model', model, '--data', data, '--out', work, '--lora_alpha', '16'], /unknown flag --lora_alpha \(did you mean --alpha\?\)/],
      [['finetune', '--model', model, '--data', data, '--out', work, '--setps', '3'], /unknown flag --setps \(did you mean --steps\?\)/],
      [['finetune', '--model', model, '--out', work], /--data <file.txt\|file.jsonl> is required/],
      [['generate', '--model', model, '--prompt'], /--prompt needs a value/],
      [['finetune', '--model', model, '--data', data, '--out', work, '--r', 'eight'], /--r must be an integer, got "eight"/],
      [['finetun', '--model', model], /unknown command 'finetun' \(did you mean 'finetune'\?\)/],
    ];
    for (const [argv, want] of cases) {
      const io = capture();
      assert.equal(await run(argv, io), 2, argv.join(' '));
      assert.match(io.errors.join('\n'), want);
    }
    const io = capture();
    assert.equal(await run(['finetune', '--model', model, '--data', path.join(work, 'nope.txt'), '--out', work], io), 2);
    assert.match(io.errors.join('\n'), /nope\.txt: no such file/);
    const io2 = capture();
    assert.equal(await run(['generate', '--model', path.join(work, 'no-model'), '--prompt', 'x'], io2), 1);
    assert.match(io2.errors.join('\n'), /no-model/);
  });

  it('the bin runs (npm exec lowrank --help)', async () => {
    const bin = path.join(repoRoot, 'packages/cli/bin/lowrank.js');
    const { stdout } = await promisify(execFile)(process.execPath, [bin, '--help'], { cwd: repoRoot, timeout: 60_000 });
    assert.match(stdout, /usage: lowrank <command>/);
    assert.match(stdout, /finetune/);
  });

  it('the bin runs from any working directory (the sources resolve without a build)', async () => {
    const bin = path.join(repoRoot, 'packages/cli/bin/lowrank.js');
    const { stdout } = await promisify(execFile)(process.execPath, [bin, 'inspect', model], { cwd: work, timeout: 60_000 });
    assert.match(stdout, /parameters: [\d,]+/);
  });
});
