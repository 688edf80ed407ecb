/** `lowrank finetune`: LoRA on a Hugging Face model over a text file; writes a PEFT adapter. */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { manualSeed } from '@lowrank/core';
import { AdamW, BatchSampler, evaluate, splitTrainVal, train, type LossModel } from '@lowrank/nn';
import { formatBytes, getPeftModel } from '@lowrank/lora';
import { UsageError, type CommandSpec, type FlagValue } from './args.ts';
import { readDocuments, tokenizeDocuments } from './data.ts';
import { count, loadModel, loadTokenizer, targetsFor, type Io } from './load.ts';

export const finetuneSpec: CommandSpec = {
  name: 'finetune',
  summary: 'Train a LoRA adapter on a text file and write it in PEFT format (adapter_config.json + adapter_model.safetensors).',
  flags: {
    model: { type: 'string', required: true, value: '<dir|url|org/name>', help: 'the base model (config.json, model.safetensors, tokenizer.json)' },
    data: { type: 'string', required: true, value: '<file.txt|file.jsonl>', help: 'training text; .jsonl records with "text", "prompt"+"completion" or "messages"' },
    out: { type: 'string', required: true, value: '<dir>', help: 'where the adapter is written' },
    r: { type: 'int', default: 8, value: '<n>', help: 'LoRA rank' },
    alpha: { type: 'number', default: 16, value: '<x>', help: 'LoRA alpha (scaling = alpha / r)' },
    dropout: { type: 'number', default: 0, value: '<p>', help: 'dropout on the adapter input' },
    targets: { type: 'list', value: '<a,b>', help: "modules to adapt (default PEFT's for the architecture: c_attn for gpt2, q_proj,v_proj for llama/qwen2)" },
    steps: { type: 'int', default: 100, value: '<n>', help: 'optimizer steps' },
    lr: { type: 'number', default: 2e-4, value: '<x>', help: 'AdamW learning rate' },
    'weight-decay': { type: 'number', default: 0, value: '<x>', help: 'AdamW weight decay' },
    'batch-size': { type: 'int', default: 4, value: '<n>', help: 'sequences per step' },
    'seq-len': { type: 'int', default: 128, value: '<n>', help: 'tokens per sequence (at most the model positions)' },
    'eval-fraction': { type: 'number', default: 0.1, value: '<x>', help: 'tail of the token stream held out for eval loss' },
    'eval-every': { type: 'int', value: '<n>', help: 'evaluate every n steps (default steps/5)' },
    'eval-batches': { type: 'int', default: 4, value: '<n>', help: 'batches per evaluation' },
    seed: { type: 'int', default: 0, value: '<n>', help: 'seed for LoRA init and batch sampling' },
  },
  examples: [
    'lowrank finetune --model ./gpt2 --data train.txt --r 8 --alpha 16 --targets c_attn --steps 200 --out ./gpt2-lora',
    'lowrank finetune --model HuggingFaceTB/SmolLM2-135M --data chats.jsonl --targets q_proj,v_proj --out ./smol-lora',
  ],
};

/** Runs finetune; returns eval losses for callers that check them. */
export async function finetune(flags: Record<string, FlagValue>, io: Io): Promise<{ evalBefore: number; evalAfter: number; files: string[] }> {
  const modelSpec = flags.model as string;
  const steps = positive(flags, 'steps');
  const batchSize = positive(flags, 'batch-size');
  const evalFraction = flags['eval-fraction'] as number;
  if (!(evalFraction > 0 && evalFraction < 1)) throw new UsageError(`lowrank finetune: --eval-fraction must be in (0, 1), got ${evalFraction}`);
  manualSeed(flags.seed as number);

  const model = await loadModel(modelSpec, { train: true });
  const tok = await loadTokenizer(modelSpec);
  const cfg = model.config;
  io.out(`model: ${modelSpec} (${cfg.modelType}, ${cfg.numHiddenLayers} layers, hidden ${cfg.hiddenSize}, vocab ${cfg.vocabSize})`);

  const docs = await readDocuments(flags.data as string, tok);
  const ids = tokenizeDocuments(docs, tok, model.vocabSize);
  const seqLen = Math.min(positive(flags, 'seq-len'), model.maxPositions);
  const { train: trainIds, val: valIds } = splitTrainVal(ids, evalFraction);
  for (const [what, part] of [['training', trainIds], ['eval', valIds]] as const) {
    if (part.length < seqLen + 1) {
      throw new UsageError(
        `lowrank finetune: --data ${flags.data as string} gives ${count(ids.length)} tokens, so the ${what} part has ${count(part.length)}; ` +
          `it needs more than --seq-len ${seqLen} (use more text or a smaller --seq-len)`,
      );
    }
  }
  io.out(`data: ${flags.data as string}: ${count(docs.length)} document${docs.length === 1 ? '' : 's'}, ${count(ids.length)} tokens (${count(trainIds.length)} train / ${count(valIds.length)} eval), sequences of ${seqLen}`);

  const targets = targetsFor(cfg.modelType, flags.targets);
  const peft = getPeftModel(model, {
    r: positive(flags, 'r'),
    loraAlpha: flags.alpha as number,
    loraDropout: flags.dropout as number,
    targetModules: targets,
    baseModelNameOrPath: modelSpec,
  });
  io.out(peft.printTrainableParameters(() => {}));

  const trainBatches = new BatchSampler(trainIds, { batchSize, blockSize: seqLen, seed: flags.seed as number });
  const evalBatches = flags['eval-batches'] as number;
  const valBatches = () => new BatchSampler(valIds, { batchSize, blockSize: seqLen, seed: 1 });
  const net: LossModel = peft;
  const evalBefore = evaluate(net, valBatches(), evalBatches);
  io.out(`eval loss before: ${evalBefore.toFixed(4)}`);
  const optimizer = new AdamW(peft.trainableParameters(), { lr: flags.lr as number, weightDecay: flags['weight-decay'] as number });
  await train({
    model: net,
    optimizer,
    train: trainBatches,
    val: valBatches(),
    steps,
    evalEvery: (flags['eval-every'] as number | undefined) ?? Math.max(1, Math.floor(steps / 5)),
    evalBatches,
    progress: io.progress,
  });
  const evalAfter = evaluate(net, valBatches(), evalBatches);
  io.out(`eval loss after: ${evalAfter.toFixed(4)}`);

  const out = flags.out as string;
  await peft.savePretrained(out);
  const files = (await readdir(out)).sort();
  const sizes = await Promise.all(files.map(async (f) => `${f} (${formatBytes((await stat(path.join(out, f))).size)})`));
  io.out(`adapter written to ${out}: ${sizes.join(', ')}`);
  return { evalBefore, evalAfter, files };
}

function positive(flags: Record<string, FlagValue>, name: string): number {
  const v = flags[name] as number;
  if (!(Number.isInteger(v) && v >= 1)) throw new UsageError(`lowrank finetune: --${name} must be a positive integer, got ${v}`);
  return v;
}
