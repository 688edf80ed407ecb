// Tutorial 2: building a transformer. Run: node --import tsx docs/02-building-a-transformer.ts [--quick]
// The page docs/02-building-a-transformer.md quotes the #region blocks below (npm run docs:sync).
import { Tensor, manualSeed, noGrad, randn, tensor } from '@lowrank/core';
import {
  AdamW, BatchSampler, CharTokenizer, LayerNorm, Linear, Module, TransformerLM, evaluate, gpt2Small, llama7b,
  resolveConfig, splitTrainVal, train,
} from '@lowrank/nn';
import { loadBrown } from '@lowrank/nn/node';
import { runIfMain, type TutorialOptions } from './cli.ts';

/** What the tutorial shows, checked by test/docs/tutorials.test.ts. */
export interface Claims {
  mlpParameterNames: string[];
  mlpOutputShape: number[];
  gptKeys: string[];
  llamaKeys: string[];
  gptParameters: number;
  llamaParameters: number;
  logitsShape: number[];
  valLossBefore: number;
  valLossAfter: number;
  greedy: string;
  /** Greedy decoding with and without the KV cache gives the same tokens. */
  cacheAgrees: boolean;
  sampled: string;
  /** The same seed samples the same text again. */
  samplingReproduces: boolean;
  gpt2SmallParameters: number;
  llama7bParameters: number;
}

// #region module
/** A two-layer perceptron: registered children become parameters with dotted names. */
class TinyMLP extends Module {
  fc1: Linear;
  norm: LayerNorm;
  fc2: Linear;

  constructor(dim: number, hidden: number) {
    super();
    this.fc1 = this.register('fc1', new Linear(dim, hidden));
    this.norm = this.register('norm', new LayerNorm(hidden));
    this.fc2 = this.register('fc2', new Linear(hidden, dim));
  }

  forward(x: Tensor): Tensor {
    const h = this.norm.forward(this.fc1.forward(x)).gelu(); // [..., hidden]
    return this.fc2.forward(h); // [..., dim]
  }
}
// #endregion

export async function main(opts: TutorialOptions): Promise<Claims> {
  const log = opts.log ?? console.log;
  const steps = opts.quick ? 30 : 300;
  const batchSize = opts.quick ? 8 : 16;
  manualSeed(0);

  // #region module-use
  const mlp = new TinyMLP(8, 32);
  for (const [name, p] of mlp.namedParameters()) log(`${name.padEnd(12)} ${p.describe()}`);
  const out = mlp.forward(randn([4, 10, 8])); // [B, T, 8] -> [B, T, 8]
  log(`output ${out.describe()}, ${mlp.numParameters()} parameters`);
  // #endregion

  // #region flavours
  const base = { vocabSize: 80, blockSize: 64, nLayer: 2, nHead: 4, nEmbd: 64 };
  const gpt = new TransformerLM({ flavour: 'gpt', ...base });
  const llama = new TransformerLM({ flavour: 'llama', ...base });
  const layer0 = (m: Module): string[] =>
    Object.keys(m.stateDict()).filter((k) => !k.startsWith('layers.') || k.startsWith('layers.0.'));
  log(`gpt:   ${gpt.numParameters().toLocaleString('en-US')} parameters`);
  log(`llama: ${llama.numParameters().toLocaleString('en-US')} parameters`);
  log(`llama defaults: ${JSON.stringify(resolveConfig({ flavour: 'llama', ...base }))}`);
  // #endregion
  const gptKeys = layer0(gpt);
  const llamaKeys = layer0(llama);
  log('gpt keys:   ' + gptKeys.join(', '));
  log('llama keys: ' + llamaKeys.join(', '));

  // #region forward
  const ids = tensor([[1, 2, 3, 4], [5, 6, 7, 8]], { dtype: 'int32' }); // [B=2, T=4]
  const { logits, loss } = gpt.forward(ids, { targets: tensor([[2, 3, 4, 5], [6, 7, 8, 9]], { dtype: 'int32' }) });
  log(`logits ${logits.describe()}, loss ${loss!.item().toFixed(3)} (ln 80 = ${Math.log(80).toFixed(3)})`);
  // #endregion

  // #region data
  const { text, files } = loadBrown({ genres: ['humor'] }); // Brown corpus, cr01..cr09
  const tokenizer = CharTokenizer.fromText(text);
  const { train: trainIds, val: valIds } = splitTrainVal(tokenizer.encode(text), 0.1);
  log(`${files.length} files, ${text.length.toLocaleString('en-US')} characters, vocabulary of ${tokenizer.vocabSize}`);
  // #endregion

  // #region train
  manualSeed(0);
  const model = new TransformerLM({
    flavour: 'gpt', vocabSize: tokenizer.vocabSize, blockSize: 64, nLayer: 2, nHead: 4, nEmbd: 64,
  });
  const batches = new BatchSampler(trainIds, { batchSize, blockSize: 64, seed: 1 });
  const valBatches = () => new BatchSampler(valIds, { batchSize, blockSize: 64, seed: 2 }); // same batches each time
  const before = evaluate(model, valBatches(), 4);
  await train({
    model, optimizer: new AdamW(model.parameters(), { lr: 3e-3 }), train: batches, steps, progress: false,
  });
  const after = evaluate(model, valBatches(), 4);
  log(`validation loss ${before.toFixed(3)} -> ${after.toFixed(3)} after ${steps} steps`);
  // #endregion

  // #region generate
  const prompt = tensor([Array.from(tokenizer.encode('The '))], { dtype: 'int32' }); // [1, 4]
  const greedyIds = model.generate(prompt, { maxNewTokens: 60, temperature: 0 });
  const uncached = model.generate(prompt, { maxNewTokens: 60, temperature: 0, useCache: false });
  const sampledIds = model.generate(prompt, { maxNewTokens: 60, temperature: 0.8, topK: 20, seed: 7 });
  const decode = (t: Tensor): string => tokenizer.decode(t.dataSync());
  log(`greedy:  ${JSON.stringify(decode(greedyIds))}`);
  log(`sampled: ${JSON.stringify(decode(sampledIds))}`);
  // #endregion
  const again = model.generate(prompt, { maxNewTokens: 60, temperature: 0.8, topK: 20, seed: 7 });

  // #region meta
  const big = new TransformerLM(gpt2Small(), { backend: 'meta' }); // shapes only: built instantly
  const huge = new TransformerLM(llama7b(), { backend: 'meta' });
  log(`gpt2-small ${big.numParameters().toLocaleString('en-US')}, llama-7b ${huge.numParameters().toLocaleString('en-US')} parameters`);
  // #endregion

  return {
    mlpParameterNames: mlp.namedParameters().map(([n]) => n),
    mlpOutputShape: [...out.shape],
    gptKeys,
    llamaKeys,
    gptParameters: gpt.numParameters(),
    llamaParameters: llama.numParameters(),
    logitsShape: [...logits.shape],
    valLossBefore: before,
    valLossAfter: after,
    greedy: decode(greedyIds),
    cacheAgrees: noGrad(() => decode(greedyIds) === decode(uncached)),
    sampled: decode(sampledIds),
    samplingReproduces: decode(again) === decode(sampledIds),
    gpt2SmallParameters: big.numParameters(),
    llama7bParameters: huge.numParameters(),
  };
}

await runIfMain(import.meta.url, main);
