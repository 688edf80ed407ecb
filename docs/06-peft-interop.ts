// Tutorial 6: PEFT interop. Run: node --import tsx docs/06-peft-interop.ts
// The page docs/06-peft-interop.md quotes the #region blocks below (npm run docs:sync).
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Tensor, decodeSafetensors, encodeSafetensors, manualSeed, noGrad, tensor, tidy, type RawTensor,
} from '@lowrank/core';
import {
  AdamW, BatchSampler, TransformerLM, llamaTiny, resolveConfig, toRaw, trainStep, type RawStateValue,
} from '@lowrank/nn';
import { PeftModel, getPeftModel, loadPeftAdapter } from '@lowrank/lora';
import '@lowrank/lora/node'; // Node's file system, for the directory paths below
import { runIfMain, type TutorialOptions } from './cli.ts';

/** What the tutorial shows, checked by test/docs/tutorials.test.ts. */
export interface Claims {
  files: string[];
  config: Record<string, unknown>;
  adapterKeys: string[];
  hfKeys: string[];
  referenceLogits: number[];
  /** max |reimported - original| logits after a PEFT-format round trip. */
  roundTripMaxDiff: number;
  /** The adapter PEFT itself wrote (shared/fixtures), when present: our logits vs PyTorch's. */
  pytorch: { maxDiff: number; loss: number; expectedLoss: number } | null;
}

/** The PyTorch fixtures: `../shared` beside the checkout, else the copy in test/fixtures. */
const FIXTURE = [
  fileURLToPath(new URL('../../shared/fixtures/', import.meta.url)),
  fileURLToPath(new URL('../test/fixtures/', import.meta.url)),
].find((d) => existsSync(d)) ?? fileURLToPath(new URL('../test/fixtures/', import.meta.url));

export async function main(opts: TutorialOptions): Promise<Claims> {
  const log = opts.log ?? console.log;
  const dir = await mkdtemp(join(tmpdir(), 'lowrank-peft-'));
  manualSeed(0);

  // #region train
  const config = resolveConfig({ flavour: 'llama', vocabSize: 64, blockSize: 32, nLayer: 2, nHead: 4, nEmbd: 64 });
  const model = new TransformerLM(config);
  const baseWeights = model.stateDict(); // keyed as before LoRA wraps anything; LoRA never changes them
  const peft = getPeftModel(model, { r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'] });
  const optimizer = new AdamW(peft.trainableParameters(), { lr: 1e-2 });
  const data = Int32Array.from({ length: 2000 }, (_, i) => (i * i) % 64);
  const batches = new BatchSampler(data, { batchSize: 4, blockSize: 32, seed: 0 });
  for (let step = 0; step < 10; step++) trainStep(peft, optimizer, batches.next()); // lora_B moves away from 0
  // #endregion

  // #region save
  await peft.savePretrained(join(dir, 'adapter'));
  const files = (await readdir(join(dir, 'adapter'))).sort();
  for (const f of files) log(`${f.padEnd(28)} ${(await stat(join(dir, 'adapter', f))).size} bytes`);
  const json = JSON.parse(await readFile(join(dir, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  const { peft_type, task_type, r, lora_alpha, target_modules } = json;
  log(JSON.stringify({ peft_type, task_type, r, lora_alpha, target_modules }));
  const { tensors } = decodeSafetensors(await readFile(join(dir, 'adapter', 'adapter_model.safetensors')));
  for (const [key, t] of [...tensors].slice(0, 4)) log(`${key} [${t.shape.join(', ')}]`);
  // #endregion

  // #region hf-export
  // Hugging Face's LlamaForCausalLM nests the decoder under `model.`; our TransformerLM is that
  // decoder with lm_head beside it. The adapter saves in that layout directly; the base weights
  // are renamed the same way.
  const hf = join(dir, 'hf');
  await peft.savePretrained(join(hf, 'adapter'), { layout: 'transformers' });
  const hfKey = (key: string): string => (key.startsWith('lm_head.') ? key : `model.${key}`);
  const weights: Record<string, RawTensor> = {};
  for (const [key, p] of Object.entries(baseWeights)) weights[hfKey(key)] = toRaw(p);
  await writeFile(join(hf, 'model.safetensors'), encodeSafetensors(weights, { format: 'pt' }));
  await writeFile(join(hf, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32',
    vocab_size: config.vocabSize, hidden_size: config.nEmbd, intermediate_size: config.intermediateSize,
    num_hidden_layers: config.nLayer, num_attention_heads: config.nHead, num_key_value_heads: config.nHead,
    head_dim: config.headDim, max_position_embeddings: config.blockSize, rms_norm_eps: config.normEps,
    rope_theta: config.ropeTheta, hidden_act: 'silu', tie_word_embeddings: config.tieWordEmbeddings,
    attention_bias: false, mlp_bias: false,
  }, null, 2));
  const adapter = decodeSafetensors(await readFile(join(hf, 'adapter', 'adapter_model.safetensors'))).tensors;
  log(`${Object.keys(weights)[1]}, ${[...adapter.keys()][0]}`);
  // #endregion

  // #region reference-logits
  const ids = tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: 'int32' });
  const logitsOf = (m: { forward(x: Tensor): { logits: Tensor } }): Float32Array =>
    tidy(() => noGrad(() => m.forward(ids).logits.dataSync() as Float32Array));
  const before = logitsOf(peft);
  log(`logits[0, -1, :4] = ${Array.from(before.slice(-config.vocabSize, -config.vocabSize + 4), (v) => v.toFixed(5)).join(', ')}`);
  // #endregion

  // #region round-trip
  const fresh = new TransformerLM(config);
  fresh.loadStateDict(baseWeights); // the same base model ("from the hub")
  const imported = await PeftModel.fromPretrained(fresh, join(dir, 'adapter')); // = loadPeftAdapter(fresh, dir)
  const after = logitsOf(imported);
  const roundTrip = before.reduce((m, v, i) => Math.max(m, Math.abs(v - after[i])), 0);
  log(`PEFT-format round trip: max |logits difference| = ${roundTrip}`);
  // #endregion

  let pytorch: Claims['pytorch'] = null;
  if (existsSync(join(FIXTURE, 'peft/llama-tiny/adapter_config.json'))) {
    // #region pytorch
    // models/llama-tiny.json holds the base weights; peft/llama-tiny/ is an adapter saved by PEFT in Python.
    const fixture = JSON.parse(await readFile(join(FIXTURE, 'models/llama-tiny.json'), 'utf8')) as {
      stateDict: Record<string, RawStateValue>;
    };
    const expected = JSON.parse(await readFile(join(FIXTURE, 'peft/llama-tiny/expected.json'), 'utf8')) as {
      inputIds: { shape: number[]; data: number[] };
      targets: { shape: number[]; data: number[] };
      logits: { data: number[] };
      loss: number;
    };
    const llama = new TransformerLM(llamaTiny());
    llama.loadStateDict(fixture.stateDict);
    const fromPython = await loadPeftAdapter(llama, join(FIXTURE, 'peft/llama-tiny'));
    fromPython.printTrainableParameters(log); // inference mode: nothing trainable
    const x = tensor(expected.inputIds.data, { shape: expected.inputIds.shape, dtype: 'int32' });
    const y = tensor(expected.targets.data, { shape: expected.targets.shape, dtype: 'int32' });
    const { logits, loss } = noGrad(() => fromPython.forward(x, { targets: y }));
    const ours = logits.dataSync();
    const maxDiff = expected.logits.data.reduce((m, v, i) => Math.max(m, Math.abs(v - ours[i])), 0);
    log(`vs PyTorch + PEFT: max |logits difference| = ${maxDiff.toExponential(2)}, loss ${loss!.item().toFixed(6)} vs ${expected.loss.toFixed(6)}`);
    // #endregion
    pytorch = { maxDiff, loss: loss!.item(), expectedLoss: expected.loss };
  } else {
    log(`(${FIXTURE} not found: skipping the adapter written by PEFT)`);
  }

  await rm(dir, { recursive: true, force: true });
  return {
    files, config: json, referenceLogits: Array.from(before.slice(-config.vocabSize, -config.vocabSize + 4)), adapterKeys: [...tensors.keys()], hfKeys: [...adapter.keys()], roundTripMaxDiff: roundTrip, pytorch,
  };
}

await runIfMain(import.meta.url, main);
