/**
 * One W2 LoRA training step's costs on one backend, measured where it runs: in
 * Node (`npm run bench -- gpu`) or in a page's Worker (`--browser`, bundled, so
 * nothing here may need Node). The first step, the timed steps at the full
 * block, then one step at a shorter sequence length.
 */
import { GpuBackend, getBackend, manualSeed, memory, tensor, tidy, type MemoryInfo } from '@lowrank/core';
import { AdamW, BatchSampler, TransformerLM } from '@lowrank/nn';
import { getPeftModel } from '@lowrank/lora';
import { ADAMW, LORA, backendInfo, fmtMs, intOption, median, option, parseSize, workload } from './common.ts';

/** Token ids and their vocabulary (bench/corpus.ts's Tokens, minus what needs Node). */
export interface TokenIds {
  ids: Int32Array;
  vocabSize: number;
}

/** Counters of one step (differences of `memory()`), plus its wall time. */
export interface StepCost {
  ms: number;
  launches: number;
  dispatches: number;
  compiles: number;
  uploads: number;
  textureBytes: number;
  readbacks: number;
}

export interface Row {
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

export async function measure(backend: string, args: readonly string[], tokens: TokenIds, say: (m: string) => void): Promise<Row> {
  const size = parseSize(option(args, 'size'));
  const steps = intOption(args, 'steps', 3);
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
  // The step ends at an awaited readback, so async-only backends (webgpu) run it too.
  const step = async (s: BatchSampler): Promise<StepCost> => {
    const b = s.next();
    const before = memory(backend);
    const t0 = performance.now();
    const loss = tidy(() => {
      const shape = [...b.shape];
      const x = tensor(b.x, { shape, dtype: 'int32', backend });
      const y = tensor(b.y, { shape, dtype: 'int32', backend });
      opt.zeroGrad();
      const out = peft.forward(x, { targets: y }).loss;
      if (!out) throw new Error('bench gpu: the model returned no loss');
      out.backward();
      opt.step();
      return out;
    });
    await loss.itemAsync();
    loss.dispose();
    return diff(before, memory(backend), performance.now() - t0);
  };
  const be = getBackend(backend);
  const first = await step(long);
  say(`first step ${fmtMs(first.ms)} ms, ${first.compiles} compiles`);
  const familiesBefore = be instanceof GpuBackend ? new Map(be.dispatchCounts) : new Map<string, number>();
  const timed: StepCost[] = [];
  for (let i = 0; i < steps; i++) {
    timed.push(await step(long));
    say(`step ${i + 1}/${steps} ${fmtMs(timed[i].ms)} ms`);
  }
  const families = be instanceof GpuBackend
    ? [...be.dispatchCounts.entries()].map(([n, c]) => [n, (c - (familiesBefore.get(n) ?? 0)) / steps] as [string, number])
      .filter(([, c]) => c > 0).sort((p, q) => q[1] - p[1])
    : [];
  const changed = await step(short);
  say(`T ${T} -> ${shortT}: ${changed.compiles} compiles, ${fmtMs(changed.ms)} ms`);
  opt.zeroGrad();
  for (const p of peft.parameters()) p.dispose();
  return {
    backend, mode: backendInfo(backend).mode, first, steady: medianCost(timed), changed, shortT,
    families,
  };
}

