// Tutorial 4: backends. Run: node --import tsx docs/04-backends.ts [--quick]
// Under a virtual display gpu.js uses headless-gl:
//   xvfb-run -a -s "-screen 0 1280x1024x24" node --import tsx docs/04-backends.ts
// The page docs/04-backends.md quotes the #region blocks below (npm run docs:sync).
import {
  Tensor, dispose, getBackend, listBackends, manualSeed, memory, noGrad, probeGpuModes, randn, resetPeak, tensor, tidy,
} from '@lowrank/core';
import { AdamW, BatchSampler, TransformerLM, trainStep } from '@lowrank/nn';
import { runIfMain, type TutorialOptions } from './cli.ts';

/** What the tutorial shows, checked by test/docs/tutorials.test.ts. */
export interface Claims {
  backends: string[];
  /** The gpu.js mode that actually ran: 'headlessgl', 'webgl2', 'webasm' or 'cpu'. */
  gpuMode: string;
  probe: Record<string, boolean>;
  /** max |gpu - cpu| for the same matmul chain. */
  opMaxDiff: number;
  /** Readbacks while computing the chain on the gpu (before asking for values). */
  readbacksWhileComputing: number;
  readbacksToRead: number;
  /** max |gpu - cpu| of a model's logits after `model.to('gpu')`. */
  modelMaxDiff: number;
  gpuLosses: number[];
  /** Live gpu tensors after each training step. */
  liveTensorsPerStep: number[];
  /** New live gpu tensors after a tidy scope that returned two. */
  tidyLeftBehind: number;
  peakBytes: number;
  /** Live gpu tensors after the model went back to cpu and the optimizer state was disposed. */
  liveTensorsAtEnd: number;
  /** `await t.data()` / `await t.itemAsync()` give the values `dataSync()` / `item()` give. */
  asyncMatchesSync: boolean;
}

export async function main(opts: TutorialOptions): Promise<Claims> {
  const log = opts.log ?? console.log;
  const steps = opts.quick ? 3 : 20;
  manualSeed(0);

  // #region backends
  log(`registered: ${listBackends().join(', ')}`);
  const gpu = getBackend('gpu'); // starts gpu.js on first use
  log(`gpu.js modes available here: ${JSON.stringify(probeGpuModes())}`);
  log(`the gpu backend runs in '${gpu.mode}' mode`);
  // #endregion

  // #region move
  const a = randn([64, 32]); // cpu (the default backend)
  const b = randn([32, 16]);
  const onCpu = a.matmul(b).relu().sum(0).dataSync(); // [16]
  const before = memory('gpu').readbacks;
  let computing = 0;
  const values = tidy(() => {
    const onGpu = a.to('gpu').matmul(b.to('gpu')).relu().sum(0); // two uploads, three kernels
    computing = memory('gpu').readbacks - before; // nothing has come back from the device yet
    log(`${onGpu.describe()} on '${onGpu.backend.name}'`);
    return onGpu.dataSync(); // the one readback; tidy then frees the five gpu tensors made here
  });
  const reading = memory('gpu').readbacks - before - computing;
  const diff = Math.max(...Array.from(onCpu, (v, i) => Math.abs(v - values[i])));
  log(`readbacks while computing ${computing}, to read ${reading}; max |gpu - cpu| = ${diff.toExponential(2)}`);
  // #endregion

  // #region model
  const model = new TransformerLM({ flavour: 'gpt', vocabSize: 32, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 32 });
  const ids = tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int32' });
  const logitsOf = (x: Tensor) => tidy(() => noGrad(() => model.forward(x).logits.dataSync()));
  const cpuLogits = logitsOf(ids);
  model.to('gpu'); // every parameter moves in place: same tensor objects, tied weights stay tied
  const gpuIds = ids.to('gpu'); // inputs must live where the parameters do
  const gpuLogits = logitsOf(gpuIds);
  const modelDiff = Math.max(...Array.from(cpuLogits, (v, i) => Math.abs(v - gpuLogits[i])));
  log(`parameters on '${model.parameters()[0].backend.name}', logits max |gpu - cpu| = ${modelDiff.toExponential(2)}`);
  gpuIds.dispose();
  // #endregion

  // #region train
  const data = Int32Array.from({ length: 400 }, (_, i) => (i * 7) % 32); // a repeating pattern to learn
  const batches = new BatchSampler(data, { batchSize: 4, blockSize: 16, seed: 0 });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-2 }); // its moments live beside the parameters
  const losses: number[] = [];
  const live: number[] = [];
  for (let step = 0; step < steps; step++) {
    const { loss } = trainStep(model, optimizer, batches.next()); // inside tidy: the step frees its intermediates
    losses.push(loss);
    live.push(memory('gpu').liveTensors);
  }
  log(`losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  log(`live gpu tensors after each step: ${live.join(' ')}`);
  // #endregion

  // #region tidy
  resetPeak('gpu');
  const start = memory('gpu').liveTensors;
  const stats = tidy(() => {
    const x = randn([256, 256], { backend: 'gpu' });
    const y = x.matmul(x).tanh(); // x, x @ x and tanh(...) are all made in here
    return { mean: y.mean(), max: y.max() }; // only what is returned survives
  });
  const leftBehind = memory('gpu').liveTensors - start;
  log(`after tidy: ${leftBehind} new live tensors, mean ${stats.mean.item().toFixed(4)}, max ${stats.max.item().toFixed(4)}`);
  log(`peak inside the scope: ${(memory('gpu').peakBytes / 1024).toFixed(0)} KiB; now live: ${memory('gpu').liveBytes} bytes`);
  dispose(stats); // free them as soon as they are no longer needed
  // #endregion
  const peakBytes = memory('gpu').peakBytes;

  // #region async
  const h = tidy(() => randn([8, 16], { backend: 'gpu' }).tanh()); // queued work; nothing read yet
  const mean = h.mean();
  const asyncValues = await h.data(); // resolves when the device has the values
  const asyncMean = await mean.itemAsync();
  log(`await h.data(): ${asyncValues.length} values; await mean.itemAsync(): ${asyncMean.toFixed(4)}`);
  // #endregion
  const asyncMatchesSync = asyncMean === mean.item() && asyncValues.every((v, i) => v === h.dataSync()[i]);
  dispose([h, mean]);

  // #region back
  model.to('cpu'); // and back; gradients left on the gpu are freed
  optimizer.dispose(); // AdamW's moments, still on the gpu
  const { liveTensors, liveBytes } = memory('gpu');
  log(`gpu after moving back: ${liveTensors} live tensors, ${liveBytes} bytes`);
  // #endregion

  return {
    backends: listBackends(),
    gpuMode: gpu.mode,
    probe: probeGpuModes(),
    opMaxDiff: diff,
    readbacksWhileComputing: computing,
    readbacksToRead: reading,
    modelMaxDiff: modelDiff,
    gpuLosses: losses,
    liveTensorsPerStep: live,
    tidyLeftBehind: leftBehind,
    peakBytes,
    liveTensorsAtEnd: liveTensors,
    asyncMatchesSync,
  };
}

await runIfMain(import.meta.url, main);
