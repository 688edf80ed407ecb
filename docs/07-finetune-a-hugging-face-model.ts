// Tutorial 7: fine-tune a Hugging Face model. Run: node --import tsx docs/07-finetune-a-hugging-face-model.ts
// The page docs/07-finetune-a-hugging-face-model.md quotes the #region blocks below (npm run docs:sync).
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { manualSeed, noGrad, tensor, tidy, type Tensor } from '@lowrank/core';
import { AdamW, AutoModelForCausalLM, AutoTokenizer, BatchSampler, evaluate, splitTrainVal, trainStep, type LossModel } from '@lowrank/nn';
import { loadBrown } from '@lowrank/nn/node';
import { PeftModel, getPeftModel } from '@lowrank/lora';
import { fixturesDir } from '../test/fixtures-dir.ts';
import { charTokenizerFiles } from '../test/pretrained/tiny-tokenizer.ts';
import { runIfMain, type TutorialOptions } from './cli.ts';

/** What the tutorial shows, checked by test/docs/tutorial-07.test.ts. */
export interface Claims {
  modelFiles: string[];
  architecture: string;
  trainableLine: string;
  roundTrip: string;
  evalBefore: number;
  evalAfter: number;
  adapterFiles: string[];
  reloadMaxDiff: number;
  mergedFiles: string[];
  mergedMaxDiff: number;
  sample: string;
}

export async function main(opts: TutorialOptions): Promise<Claims> {
  const log = opts.log ?? console.log;
  const work = await mkdtemp(join(tmpdir(), 'lowrank-hf-'));
  manualSeed(0);

  // #region model-dir
  // A model directory as the Hub serves it: config.json + model.safetensors (+ tokenizer files).
  // This one is the 2-layer GPT-2 of the test fixtures; it ships no tokenizer, so we write a
  // character-level tokenizer.json beside it (a real checkpoint such as gpt2 has its own).
  const dir = join(work, 'gpt2-tiny');
  await cp(join(fixturesDir, 'hf/gpt2-tiny'), dir, { recursive: true });
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  for (const [name, bytes] of charTokenizerFiles(config)) await writeFile(join(dir, name), bytes);
  const modelFiles = (await readdir(dir)).sort();
  log(modelFiles.join('  '));
  // #endregion

  // #region load
  const model = await AutoModelForCausalLM.fromPretrained(dir, { train: true });
  const tokenizer = await AutoTokenizer.fromPretrained(dir);
  const architecture = `${model.constructor.name}: ${model.config.numHiddenLayers} layers, hidden ${model.config.hiddenSize}, vocab ${model.config.vocabSize}`;
  log(architecture);
  const roundTrip = tokenizer.decode(tokenizer.encode('The jury said.'));
  log(`${JSON.stringify(tokenizer.encode('The jury'))} -> ${JSON.stringify(roundTrip)}`);
  // #endregion

  // #region lora
  // GPT-2 keeps q, k and v in one Conv1D, `c_attn` ([in, out] weights): PEFT targets it with
  // fan_in_fan_out, and so does lowrank.
  const peft = getPeftModel(model, { r: 8, loraAlpha: 16, targetModules: ['c_attn'], loraDropout: 0 });
  const trainableLine = peft.printTrainableParameters(log);
  // #endregion

  // #region train
  const text = loadBrown({ genres: ['humor'], maxFiles: opts.quick ? 1 : 9 }).text;
  const ids = Int32Array.from(tokenizer.encode(text));
  const { train, val } = splitTrainVal(ids, 0.1);
  const blockSize = Math.min(32, model.maxPositions);
  const batches = new BatchSampler(train, { batchSize: 8, blockSize, seed: 0 });
  const valBatches = () => new BatchSampler(val, { batchSize: 8, blockSize, seed: 1 });
  const net = peft as unknown as LossModel;
  const evalBefore = evaluate(net, valBatches(), 4);
  const optimizer = new AdamW(peft.trainableParameters(), { lr: 1e-2 });
  const steps = opts.quick ? 30 : 200;
  for (let step = 1; step <= steps; step++) {
    const { loss } = trainStep(net, optimizer, batches.next());
    if (step % (steps / 5) === 0) log(`step ${step}: loss ${loss.toFixed(4)}`);
  }
  const evalAfter = evaluate(net, valBatches(), 4);
  log(`eval loss ${evalBefore.toFixed(4)} -> ${evalAfter.toFixed(4)}`);
  // #endregion

  // #region save-adapter
  const adapterDir = join(work, 'gpt2-tiny-lora');
  await peft.savePretrained(adapterDir);
  const adapterFiles = (await readdir(adapterDir)).sort();
  log(adapterFiles.join('  '));
  // #endregion

  // #region reload
  peft.eval();
  const probe = tensor([tokenizer.encode('He said')], { dtype: 'int32' });
  const logitsOf = (m: { forward(x: Tensor): { logits: Tensor } }): Float32Array =>
    tidy(() => noGrad(() => m.forward(probe).logits.dataSync() as Float32Array));
  const tuned = logitsOf(peft);
  const base = await AutoModelForCausalLM.fromPretrained(dir);
  const reloaded = await PeftModel.fromPretrained(base, adapterDir);
  const reloadMaxDiff = maxDiff(tuned, logitsOf(reloaded));
  log(`reloaded adapter: max |logits difference| = ${reloadMaxDiff}`);
  const out = reloaded.getBaseModel().generate([tokenizer.encode('He said')], { maxNewTokens: 20 });
  const sample = tokenizer.decode((out.toArray() as number[][])[0], { skipSpecialTokens: true });
  log(`greedy: ${JSON.stringify(sample)}`);
  // #endregion

  // #region merge
  const mergedDir = join(work, 'gpt2-tiny-merged');
  const merged = reloaded.mergeAndUnload(); // W += (B A)^T * alpha / r on the [in, out] Conv1D weight
  await merged.savePretrained(mergedDir);
  await tokenizer.savePretrained(mergedDir);
  const mergedFiles = (await readdir(mergedDir)).sort();
  const again = await AutoModelForCausalLM.fromPretrained(mergedDir);
  const mergedMaxDiff = maxDiff(tuned, logitsOf(again));
  log(`${mergedFiles.join('  ')}\nmerged model: max |logits difference| = ${mergedMaxDiff.toExponential(2)}`);
  // #endregion

  await rm(work, { recursive: true, force: true });
  return {
    modelFiles, architecture, trainableLine, roundTrip, evalBefore, evalAfter, adapterFiles, reloadMaxDiff,
    mergedFiles, mergedMaxDiff, sample,
  };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

await runIfMain(import.meta.url, main);
