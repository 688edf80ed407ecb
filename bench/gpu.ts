/**
 * `npm run bench -- gpu`: what a W2 LoRA training step costs the gpu backend,
 * per gpu.js mode, next to the cpu backend. Per step: gpu.js dispatches,
 * shader / wasm compiles, host-to-device uploads, device buffer bytes
 * allocated, and the step time; then the same after the sequence length
 * changes (compiles there say whether kernels are generic in their sizes).
 *
 *   xvfb-run -a -s "-screen 0 1280x1024x24" npm run bench -- gpu
 *   npm run bench -- gpu --size tiny --steps 2 --backends cpu,gpu:webasm --short 32
 *   (options: --size w2|medium|large|tiny, --steps 3 (timed, after 1 warm-up), --short <T> (default block/2),
 *    --backends cpu,gpu (gpu: every mode that starts here), --vocab 65, --families (per-kernel dispatches))
 */
import { GpuBackend, getBackend, manualSeed, memory, tensor, tidy, type MemoryInfo } from '@lowrank/core';
import { AdamW, BatchSampler, TransformerLM } from '@lowrank/nn';
import { getPeftModel } from '@lowrank/lora';
import {
  ADAMW, LORA, backendInfo, flag, fmtBytes, fmtInt, fmtMs, formatTable, intOption, median, option, parseSize, workload,
} from './common.ts';
import { randomTokens } from './corpus.ts';
import { expandGpuBackends } from './gpu-modes.ts';

/** Counters of one step (differences of `memory()`), plus its wall time. */
interface StepCost {
  ms: number;
  launches: number;
  dispatches: number;
  compiles: number;
  uploads: number;
  textureBytes: number;
  readbacks: number;
}

interface Row {
  backend: string;
  mode: string;
  /** The first step (compiles everything). */
  first: StepCost;
  /** Median / per-step over the timed steps at the full block. */
  steady: StepCost;
  /** The first step after the sequence length changed. */
  changed: StepCost;
  shortT: number;
  families: [string, number][];
}

function diff(a: MemoryInfo, b: MemoryInfo, ms: number): StepCost {
  return {
    ms,
    launches: b.kernelLaunches - a.kernelLaunches,
    dispatches: b.dispatches - a.dispatches,
    compiles: b.compiles - a.compiles,
    uploads: b.uploads - a.uploads,
    textureBytes: b.textureBytes - a.textureBytes,
    readbacks: b.readbacks - a.readbacks,
  };
}

function medianCost(xs: readonly StepCost[]): StepCost {
  const pick = (f: (c: StepCost) => number): number => median(xs.map(f));
  return {
    ms: pick((c) => c.ms), launches: pick((c) => c.launches), dispatches: pick((c) => c.dispatches),
    compiles: xs.reduce((s, c) => s + c.compiles, 0), uploads: pick((c) => c.uploads),
    textureBytes: pick((c) => c.textureBytes), readbacks: pick((c) => c.readbacks),
  };
}

function measure(backend: string, args: readonly string[]): Row {
  const size = parseSize(option(args, 'size'));
  const steps = intOption(args, 'steps', 3);
  const tokens = randomTokens(intOption(args, 'vocab', 65));
  const w = workload(size, tokens.vocabSize);
  const T = w.config.blockSize;
  const shortT = intOption(args, 'short', Math.max(1, T >> 1));
  manualSeed(0);
  const base = new TransformerLM(w.config, { backend });
  const peft = getPeftModel(base, { r: LORA.r, loraAlpha: LORA.alpha, targetModules: [...LORA.targets] });
  peft.train();
  const opt = new AdamW(peft.trainableParameters(), { lr: ADAMW.lr, weightDecay: ADAMW.weightDecay });
  const long = new BatchSampler(tokens.ids, { batchSize: w.batchSize, blockSize: T, seed: 1 });
  const short = new BatchSampler(tokens.ids, { batchSize: w.batchSize, blockSize: shortT, seed: 2 });
  const step = (s: BatchSampler): StepCost => {
    const b = s.next();
    const before = memory(backend);
    const t0 = performance.now();
    tidy(() => {
      const shape = [...b.shape];
      const x = tensor(b.x, { shape, dtype: 'int32', backend });
      const y = tensor(b.y, { shape, dtype: 'int32', backend });
      opt.zeroGrad();
      const { loss } = peft.forward(x, { targets: y });
      if (!loss) throw new Error('bench gpu: the model returned no loss');
      loss.backward();
      opt.step();
      loss.item(); // a readback: the step has finished
    });
    return diff(before, memory(backend), performance.now() - t0);
  };
  const be = getBackend(backend);
  const say = (m: string): void => { process.stderr.write(`[gpu bench ${backend}] ${m}\n`); };
  const first = step(long);
  say(`first step ${fmtMs(first.ms)} ms, ${first.compiles} compiles`);
  const familiesBefore = be instanceof GpuBackend ? new Map(be.dispatchCounts) : new Map<string, number>();
  const timed: StepCost[] = [];
  for (let i = 0; i < steps; i++) {
    timed.push(step(long));
    say(`step ${i + 1}/${steps} ${fmtMs(timed[i].ms)} ms`);
  }
  const families = be instanceof GpuBackend
    ? [...be.dispatchCounts.entries()].map(([n, c]) => [n, (c - (familiesBefore.get(n) ?? 0)) / steps] as [string, number])
      .filter(([, c]) => c > 0).sort((p, q) => q[1] - p[1])
    : [];
  const changed = step(short);
  say(`T ${T} -> ${shortT}: ${changed.compiles} compiles, ${fmtMs(changed.ms)} ms`);
  opt.zeroGrad();
  for (const p of peft.parameters()) p.dispose();
  return {
    backend, mode: backendInfo(backend).mode, first, steady: medianCost(timed), changed, shortT,
    families,
  };
}

export function run(args: string[]): Row[] {
  const size = parseSize(option(args, 'size'));
  const names = expandGpuBackends((option(args, 'backends') ?? 'cpu,gpu').split(','));
  const rows = names.map((n) => measure(n, args));
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
    `${intOption(args, 'steps', 3)} timed steps after 1 warm-up`);
  console.log(formatTable(header, table, [0, 1]));
  if (flag(args, 'families')) {
    for (const r of rows) {
      if (r.families.length === 0) continue;
      console.log(`\n${r.backend}: dispatches per step by kernel family (timed steps)`);
      console.log(formatTable(['family', 'per step'], r.families.map(([n, c]) => [n, c.toFixed(1)])));
    }
  }
  return rows;
}
