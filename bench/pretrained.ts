/**
 * `npm run bench -- pretrained`: a GPT-2-small-shaped model (124M parameters, random weights)
 * written in the Hub layout (config.json + model.safetensors, keys `transformer.*`, F32) to a
 * temp dir; then, each in a fresh process, `AutoModelForCausalLM.fromPretrained` (time, peak
 * RSS) and one LoRA (r=8 on c_attn) vs full training step at batch 4 x 128 (step time, peak RSS).
 *
 *   npm run bench -- pretrained [--dtype float32] [--steps 3] [--warmup 1] [--batch 4] [--seq 128]
 *                               [--size gpt2|tiny] [--out bench/results]
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmtBytes, fmtInt, formatTable, intOption, option } from './common.ts';
import { RESULT_PREFIX } from './protocol.ts';
import type { PretrainedLoadResult, PretrainedResult, PretrainedStepResult } from './pretrained-worker.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const WORKER = join(HERE, 'pretrained-worker.ts');

/** The sizes of a GPT-2 config.json. */
export interface Gpt2Shape {
  n_embd: number;
  n_layer: number;
  n_head: number;
  vocab_size: number;
  n_positions: number;
}

/** GPT-2 small (openai-community/gpt2) and a tiny sibling for the harness test. */
const SHAPES: Record<string, Gpt2Shape> = {
  gpt2: { n_embd: 768, n_layer: 12, n_head: 12, vocab_size: 50257, n_positions: 1024 },
  tiny: { n_embd: 64, n_layer: 2, n_head: 2, vocab_size: 512, n_positions: 64 },
};

/** GPT2LMHeadModel's stored tensors (lm_head tied, not stored), in checkpoint order. */
export function gpt2Tensors(s: Gpt2Shape): [string, number[]][] {
  const C = s.n_embd;
  const t: [string, number[]][] = [['transformer.wte.weight', [s.vocab_size, C]], ['transformer.wpe.weight', [s.n_positions, C]]];
  for (let i = 0; i < s.n_layer; i++) {
    const h = `transformer.h.${i}`;
    t.push(
      [`${h}.ln_1.weight`, [C]], [`${h}.ln_1.bias`, [C]],
      [`${h}.attn.c_attn.weight`, [C, 3 * C]], [`${h}.attn.c_attn.bias`, [3 * C]],
      [`${h}.attn.c_proj.weight`, [C, C]], [`${h}.attn.c_proj.bias`, [C]],
      [`${h}.ln_2.weight`, [C]], [`${h}.ln_2.bias`, [C]],
      [`${h}.mlp.c_fc.weight`, [C, 4 * C]], [`${h}.mlp.c_fc.bias`, [4 * C]],
      [`${h}.mlp.c_proj.weight`, [4 * C, C]], [`${h}.mlp.c_proj.bias`, [C]],
    );
  }
  t.push(['transformer.ln_f.weight', [C]], ['transformer.ln_f.bias', [C]]);
  return t;
}

/**
 * Writes config.json and model.safetensors (F32) for `shape` into `dir`, streaming the random
 * values in 1M-element chunks so the parent never holds the whole model. Returns the file size.
 */
export function writeRandomGpt2(dir: string, shape: Gpt2Shape, seed = 0): number {
  const config = {
    architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', activation_function: 'gelu_new',
    n_embd: shape.n_embd, n_layer: shape.n_layer, n_head: shape.n_head, n_ctx: shape.n_positions, n_positions: shape.n_positions,
    n_inner: null, vocab_size: shape.vocab_size, layer_norm_epsilon: 1e-5, bos_token_id: shape.vocab_size - 1,
    eos_token_id: shape.vocab_size - 1, attn_pdrop: 0.1, embd_pdrop: 0.1, resid_pdrop: 0.1, initializer_range: 0.02,
    scale_attn_weights: true, tie_word_embeddings: true, torch_dtype: 'float32', use_cache: true,
  };
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const tensors = gpt2Tensors(shape);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, dims] of tensors) {
    const bytes = dims.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape: dims, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, json);
    let state = (seed * 2654435761 + 0x9e3779b9) >>> 0;
    const chunk = new Float32Array(1 << 20);
    for (const [name, dims] of tensors) {
      const norm = name.includes('.ln_');
      let left = dims.reduce((a, b) => a * b, 1);
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        for (let i = 0; i < n; i++) {
          state ^= state << 13;
          state ^= state >>> 17;
          state ^= state << 5;
          const u = (state >>> 0) / 4294967296 - 0.5; // uniform [-0.5, 0.5)
          chunk[i] = norm ? (name.endsWith('weight') ? 1 + 0.1 * u : 0.1 * u) : 0.0693 * u; // std 0.02
        }
        writeSync(fd, chunk.subarray(0, n));
        left -= n;
      }
    }
  } finally {
    closeSync(fd);
  }
  return statSync(join(dir, 'model.safetensors')).size;
}

function runWorker(args: readonly string[]): Promise<PretrainedResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let tail = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      tail = (tail + d).slice(-4000);
      process.stderr.write(d.replace(/^(?=.)/gm, '    '));
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code === 0 && line) resolvePromise(JSON.parse(line.slice(RESULT_PREFIX.length)) as PretrainedResult);
      else reject(new Error(`pretrained worker exited with code ${code}: ${tail.trim().split('\n').slice(-1)[0] ?? ''}`));
    });
  });
}

export interface PretrainedReport {
  suite: 'pretrained';
  createdAt: string;
  machine: { cpus: number; cpuModel: string; node: string; loadavgStart: number[]; loadavgEnd: number[] };
  size: string;
  dtype: string;
  fileBytes: number;
  parameters: number;
  load: PretrainedLoadResult;
  lora: PretrainedStepResult;
  full: PretrainedStepResult;
}

/** The report as markdown (also printed). */
export function markdown(r: PretrainedReport): string {
  const ms = (x: number) => `${x.toFixed(0)} ms`;
  const rows = [
    ['fromPretrained time', ms(r.load.loadMs), '', ''],
    ['fromPretrained peak RSS', fmtBytes(r.load.peakRssBytes), '', ''],
    ['step time, median', '', ms(r.full.medianMs), ms(r.lora.medianMs)],
    ['step peak RSS', '', fmtBytes(r.full.peakRssBytes), fmtBytes(r.lora.peakRssBytes)],
    ['peak tensor bytes', '', fmtBytes(r.full.peakTensorBytes), fmtBytes(r.lora.peakTensorBytes)],
    ['trainable params', '', fmtInt(r.full.trainableParams), fmtInt(r.lora.trainableParams)],
  ];
  return [
    `### Pre-trained GPT-2-shaped model (${r.size}): ${fmtInt(r.parameters)} parameters, model.safetensors ${fmtBytes(r.fileBytes)} (F32), dtype ${r.dtype}`,
    '',
    formatTable(['', 'load', `full, batch ${r.full.batch} x ${r.full.seq}`, `LoRA r=8 c_attn, batch ${r.lora.batch} x ${r.lora.seq}`], rows),
    '',
    `${r.full.warmup} warm-up + ${r.full.stepMs.length} timed AdamW steps per mode, each mode (and the load) in a fresh process; ` +
      `${r.machine.cpus} CPUs (${r.machine.cpuModel}), load average ${r.machine.loadavgStart.map((x) => x.toFixed(2)).join(' ')} at the start, ` +
      `${r.machine.loadavgEnd.map((x) => x.toFixed(2)).join(' ')} at the end.`,
  ].join('\n');
}

export async function run(args: readonly string[]): Promise<PretrainedReport> {
  const size = option(args, 'size') ?? 'gpt2';
  if (!Object.hasOwn(SHAPES, size)) throw new Error(`bench pretrained: --size must be gpt2 or tiny, got '${size}'`);
  const shape = SHAPES[size];
  const dtype = option(args, 'dtype');
  const batch = intOption(args, 'batch', size === 'tiny' ? 2 : 4);
  const seq = intOption(args, 'seq', size === 'tiny' ? 16 : 128);
  const steps = intOption(args, 'steps', 3);
  const warmup = intOption(args, 'warmup', 1, 0);
  const out = resolve(option(args, 'out') ?? join(ROOT, 'bench', 'results'));
  const started = new Date();
  const loadavgStart = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'lowrank-bench-gpt2-'));
  try {
    process.stderr.write(`[1/4] writing a random ${size} GPT-2 in the Hub layout to ${dir}\n`);
    const fileBytes = writeRandomGpt2(dir, shape);
    const common = ['--dir', dir, ...(dtype ? ['--dtype', dtype] : [])];
    const train = [...common, '--batch', String(batch), '--seq', String(seq), '--steps', String(steps), '--warmup', String(warmup)];
    process.stderr.write('[2/4] fromPretrained (fresh process)\n');
    const load = (await runWorker([...common, '--mode', 'load'])) as PretrainedLoadResult;
    process.stderr.write('[3/4] full fine-tuning step (fresh process)\n');
    const full = (await runWorker([...train, '--mode', 'full'])) as PretrainedStepResult;
    process.stderr.write('[4/4] LoRA r=8 on c_attn step (fresh process)\n');
    const lora = (await runWorker([...train, '--mode', 'lora'])) as PretrainedStepResult;
    const c = cpus();
    const report: PretrainedReport = {
      suite: 'pretrained', createdAt: started.toISOString(),
      machine: { cpus: c.length, cpuModel: c[0]?.model.trim() ?? 'unknown', node: process.version, loadavgStart, loadavgEnd: loadavg() },
      size, dtype: dtype ?? 'default', fileBytes, parameters: load.parameters, load, lora, full,
    };
    const resultDir = join(out, `${started.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}-pretrained`);
    mkdirSync(resultDir, { recursive: true });
    const md = markdown(report);
    writeFileSync(join(resultDir, 'report.md'), `${md}\n`);
    writeFileSync(join(resultDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    console.log(md);
    console.log(`\nwritten: ${resultDir}/report.md, report.json`);
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
