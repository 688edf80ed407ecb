// Tutorial 3: LoRA fine-tuning end to end. Run: node --import tsx docs/03-lora-finetune.ts [--quick]
// The page docs/03-lora-finetune.md quotes the #region blocks below (npm run docs:sync).
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor, manualSeed, noGrad, tensor, tidy } from '@lowrank/core';
import {
  AdamW, BROWN_GENRES, BatchSampler, CharTokenizer, LambdaLR, TransformerLM, cosineWithWarmup, evaluate,
  restoreCheckpoint, splitTrainVal, train, type TransformerConfigInput,
} from '@lowrank/nn';
import { loadBrown, loadCheckpoint, saveCheckpoint } from '@lowrank/nn/node';
import { LoraConfig, getPeftModel } from '@lowrank/lora';
import { loadAdapter } from '@lowrank/lora/node';
import { runIfMain, type TutorialOptions } from './cli.ts';

/** What the tutorial shows, checked by test/docs/tutorials.test.ts. */
export interface Claims {
  pretrainFiles: number;
  humorFiles: string[];
  pretrainValLoss: { before: number; after: number };
  trainableLine: string;
  lora: { trainable: number; total: number; valBefore: number; valAfter: number; seconds: number };
  full: { trainable: number; valAfter: number; seconds: number; trainingStateBytes: number };
  loraTrainingStateBytes: number;
  adapterBytes: number;
  checkpointBytes: number;
  /** max |reloaded - trained| over the logits of a batch (0: bit-exact). */
  reloadMaxDiff: number;
  /** max |merged - unmerged| over the same logits. */
  mergeMaxDiff: number;
  baseSample: string;
  tunedSample: string;
  seconds: number;
}

export async function main(opts: TutorialOptions): Promise<Claims> {
  const log = opts.log ?? console.log;
  const t0 = performance.now();
  const quick = opts.quick;
  // Full run: a 3-layer model, ~8 minutes on 2 cores. Quick (tests): a toy, a few seconds.
  const size = quick
    ? { nEmbd: 32, nLayer: 2, blockSize: 32, batchSize: 16, pretrainSteps: 120, tuneSteps: 60, evalBatches: 4 }
    : { nEmbd: 64, nLayer: 3, blockSize: 64, batchSize: 16, pretrainSteps: 500, tuneSteps: 200, evalBatches: 16 };
  const progress = !quick;
  const dir = await mkdtemp(join(tmpdir(), 'lowrank-tutorial-'));
  manualSeed(0);

  // #region data
  const heldOut = 'cr'; // humor: 9 files the base model never sees
  const general = loadBrown({ genres: Object.keys(BROWN_GENRES).filter((g) => g !== heldOut) });
  const humor = loadBrown({ genres: [heldOut] });
  const tokenizer = CharTokenizer.fromText(general.text + humor.text);
  const generalSplit = splitTrainVal(tokenizer.encode(general.text), 0.05);
  const humorSplit = splitTrainVal(tokenizer.encode(humor.text), 0.15); // the last 15% validates
  log(`pre-training text: ${general.files.length} files, ${general.text.length.toLocaleString('en-US')} characters`);
  log(`fine-tuning text (${BROWN_GENRES[heldOut]}): ${humor.files.join(' ')}, ${humor.text.length.toLocaleString('en-US')} characters`);
  log(`vocabulary: ${tokenizer.vocabSize} characters`);
  // #endregion

  const { blockSize, batchSize, evalBatches } = size;
  // #region eval
  // The same validation windows every time, so numbers are comparable.
  const valLoss = (model: TransformerLM, ids: Int32Array): number =>
    evaluate(model, new BatchSampler(ids, { batchSize, blockSize, seed: 1234 }), evalBatches);
  // #endregion

  // #region pretrain
  const config: TransformerConfigInput = {
    flavour: 'gpt', vocabSize: tokenizer.vocabSize, blockSize, nLayer: size.nLayer, nHead: 4, nEmbd: size.nEmbd,
  };
  const model = new TransformerLM(config);
  const pretrainBefore = valLoss(model, generalSplit.val);
  const optimizer = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const pre = await train({
    model, optimizer, steps: size.pretrainSteps, progress,
    train: new BatchSampler(generalSplit.train, { batchSize, blockSize, seed: 1 }),
    scheduler: new LambdaLR(optimizer, cosineWithWarmup({ warmupSteps: 20, totalSteps: size.pretrainSteps, minRatio: 0.1 })),
  });
  const pretrainAfter = valLoss(model, generalSplit.val);
  const basePath = join(dir, 'base.ckpt');
  await saveCheckpoint(basePath, { model, step: size.pretrainSteps }); // "the base model on the hub"
  log(`pre-trained ${model.numParameters().toLocaleString('en-US')} parameters for ${size.pretrainSteps} steps in ${pre.seconds.toFixed(0)} s`);
  log(`general validation loss ${pretrainBefore.toFixed(3)} -> ${pretrainAfter.toFixed(3)}`);
  // #endregion

  // #region base-loader
  async function loadBase(): Promise<TransformerLM> {
    const base = new TransformerLM(config);
    restoreCheckpoint(await loadCheckpoint(basePath), { model: base, rng: false });
    return base;
  }
  // #endregion

  // #region peft
  const loraConfig = new LoraConfig({
    r: 8, loraAlpha: 16, loraDropout: 0.05, targetModules: 'all-linear', // every Linear but lm_head
  });
  const peft = getPeftModel(await loadBase(), loraConfig);
  const trainableLine = peft.printTrainableParameters(log);
  // #endregion

  // #region finetune
  const loraBefore = valLoss(peft.getBaseModel(), humorSplit.val);
  const loraOptimizer = new AdamW(peft.trainableParameters(), { lr: 5e-3 });
  const tuned = await train({
    model: peft, optimizer: loraOptimizer, steps: size.tuneSteps, progress,
    train: new BatchSampler(humorSplit.train, { batchSize, blockSize, seed: 2 }),
  });
  const loraAfter = valLoss(peft.getBaseModel(), humorSplit.val);
  log(`LoRA: humor validation loss ${loraBefore.toFixed(3)} -> ${loraAfter.toFixed(3)} (${size.tuneSteps} steps, ${tuned.seconds.toFixed(0)} s)`);
  // #endregion

  // #region full
  const full = await loadBase(); // a second copy of the base, every weight trainable
  const fullOptimizer = new AdamW(full.parameters(), { lr: 1e-3 });
  const fullRun = await train({
    model: full, optimizer: fullOptimizer, steps: size.tuneSteps, progress,
    train: new BatchSampler(humorSplit.train, { batchSize, blockSize, seed: 2 }),
  });
  const fullAfter = valLoss(full, humorSplit.val);
  // Training state beyond the frozen weights: gradients (4 B) + AdamW's m and v (8 B) per trainable parameter.
  const stateBytes = (n: number): number => 12 * n;
  const { trainable, total } = peft.getNbTrainableParameters();
  log(`full fine-tuning: humor validation loss ${loraBefore.toFixed(3)} -> ${fullAfter.toFixed(3)} (${fullRun.seconds.toFixed(0)} s)`);
  log(`trainable parameters: LoRA ${trainable.toLocaleString('en-US')}, full ${full.numParameters().toLocaleString('en-US')}`);
  log(`gradients + AdamW state: LoRA ${(stateBytes(trainable) / 1024).toFixed(0)} KB, full ${(stateBytes(full.numParameters()) / 1024).toFixed(0)} KB`);
  // #endregion

  // #region save
  const adapterPath = await peft.saveAdapter(join(dir, 'humor-adapter')); // config + lora_A/lora_B only
  const fullPath = join(dir, 'humor-full.ckpt');
  await saveCheckpoint(fullPath, { model: full, step: size.tuneSteps }); // what full fine-tuning has to ship
  const adapterBytes = (await stat(adapterPath)).size;
  const checkpointBytes = (await stat(fullPath)).size;
  log(`adapter ${(adapterBytes / 1024).toFixed(1)} KB vs full checkpoint ${(checkpointBytes / 1024).toFixed(1)} KB (${(checkpointBytes / adapterBytes).toFixed(1)}x)`);
  // #endregion

  // #region reload
  const batch = new BatchSampler(humorSplit.val, { batchSize: 2, blockSize, seed: 7 }).next();
  const ids = tensor(batch.x, { shape: batch.shape, dtype: 'int32' });
  const logitsOf = (m: { forward(x: Tensor): { logits: Tensor } }): Float32Array =>
    tidy(() => noGrad(() => m.forward(ids).logits.dataSync() as Float32Array));
  peft.eval(); // dropout off, as for any inference
  const trained = logitsOf(peft);
  const reloaded = await loadAdapter(await loadBase(), join(dir, 'humor-adapter')); // a fresh base + the file
  reloaded.eval();
  const again = logitsOf(reloaded);
  const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  log(`reloaded adapter: max |logits - trained logits| = ${maxDiff(again, trained)}`);
  // #endregion

  // #region merge
  const merged = reloaded.mergeAndUnload(); // a plain TransformerLM: W + (alpha / r) B A in every target
  const mergedLogits = logitsOf(merged);
  log(`merged: ${merged.constructor.name}, ${merged.numParameters().toLocaleString('en-US')} parameters, max |merged - unmerged| = ${maxDiff(mergedLogits, trained).toExponential(2)}`);
  // #endregion

  // #region generate
  const prompt = tensor([Array.from(tokenizer.encode('He said '))], { dtype: 'int32' });
  const sample = (m: TransformerLM): string =>
    tokenizer.decode(m.generate(prompt, { maxNewTokens: 120, temperature: 0.8, topK: 20, seed: 3 }).dataSync());
  const base = await loadBase();
  log(`base:  ${JSON.stringify(sample(base))}`);
  log(`tuned: ${JSON.stringify(sample(merged))}`);
  // #endregion

  await rm(dir, { recursive: true, force: true });
  return {
    pretrainFiles: general.files.length,
    humorFiles: humor.files,
    pretrainValLoss: { before: pretrainBefore, after: pretrainAfter },
    trainableLine,
    lora: { trainable, total, valBefore: loraBefore, valAfter: loraAfter, seconds: tuned.seconds },
    full: { trainable: full.numParameters(), valAfter: fullAfter, seconds: fullRun.seconds, trainingStateBytes: stateBytes(full.numParameters()) },
    loraTrainingStateBytes: stateBytes(trainable),
    adapterBytes,
    checkpointBytes,
    reloadMaxDiff: maxDiff(again, trained),
    mergeMaxDiff: maxDiff(mergedLogits, trained),
    baseSample: sample(base),
    tunedSample: sample(merged),
    seconds: (performance.now() - t0) / 1000,
  };
}

await runIfMain(import.meta.url, main);
