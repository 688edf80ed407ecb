/** `lowrank inspect <dir>`: architecture, sizes, PEFT's trainable-params line and full vs LoRA memory, from config.json alone. */
import { AutoModelForCausalLM, openSource, parseJsonFile, requireFile, type PreTrainedModel } from '@lowrank/nn';
import '@lowrank/nn/node';
import { estimateMemory, formatTrainableParameters, getPeftModel, renderMemoryTable, type MemoryEstimate } from '@lowrank/lora';
import { UsageError, type CommandSpec, type FlagValue } from './args.ts';
import { count, targetsFor, type Io } from './load.ts';

export const inspectSpec: CommandSpec = {
  name: 'inspect',
  summary: 'Describe a model directory: architecture, parameters, the LoRA trainable-params line, and full vs LoRA training memory.',
  positionals: [{ name: 'dir', help: 'a model directory (or URL / Hub id) with config.json' }],
  flags: {
    r: { type: 'int', default: 8, value: '<n>', help: 'LoRA rank for the estimate' },
    targets: { type: 'list', value: '<a,b>', help: "modules to adapt (default PEFT's for the architecture)" },
    'batch-size': { type: 'int', default: 4, value: '<n>', help: 'batch of the memory estimate' },
    'seq-len': { type: 'int', default: 128, value: '<n>', help: 'sequence length of the memory estimate' },
  },
  examples: ['lowrank inspect ./gpt2 --r 8 --targets c_attn'],
};

export interface InspectResult {
  architecture: string;
  parameters: number;
  trainableLine: string;
  full: MemoryEstimate;
  lora: MemoryEstimate;
}

/** Runs inspect (no weights are read: the model is built on the meta backend). */
export async function inspectCommand(flags: Record<string, FlagValue>, positionals: string[], io: Io): Promise<InspectResult> {
  const dir = positionals[0];
  const src = await openSource(dir);
  const configJson = parseJsonFile(await requireFile(src, 'config.json', "the model's Hugging Face config"), `${src.describe}/config.json`);
  const model = AutoModelForCausalLM.fromConfig(configJson, { backend: 'meta' });
  const c = model.config;
  const architecture = Array.isArray((c.raw as { architectures?: unknown }).architectures)
    ? String((c.raw as { architectures: unknown[] }).architectures[0])
    : c.modelType;
  const parameters = model.parameters().reduce((n, p) => n + p.size, 0);
  const attention = c.numKeyValueHeads < c.numAttentionHeads ? `grouped-query ${c.numAttentionHeads} heads / ${c.numKeyValueHeads} kv` : `${c.numAttentionHeads} heads`;
  io.out(`${dir}: ${architecture} (model_type ${c.modelType})`);
  io.out(`  ${c.numHiddenLayers} layers, hidden ${c.hiddenSize}, ${attention}, head_dim ${c.headDim}, intermediate ${c.intermediateSize}`);
  io.out(`  vocab ${count(c.vocabSize)}, positions ${count(c.maxPositionEmbeddings)}, ${c.tieWordEmbeddings ? 'tied' : 'untied'} lm_head`);
  io.out(`  parameters: ${count(parameters)} (${(parameters / 1e6).toFixed(1)}M)`);

  const targets = targetsFor(c.modelType, flags.targets);
  const lora = { r: flags.r as number, targetModules: targets };
  // estimateMemory rebuilds the architecture on meta from model.config (this model stays as it is).
  const seq = Math.min(flags['seq-len'] as number, c.maxPositionEmbeddings);
  const opts = { batch: flags['batch-size'] as number, seq };
  const full = estimateMemory(model, null, { mode: 'full', ...opts });
  let loraEstimate: MemoryEstimate;
  let trainableLine: string;
  try {
    loraEstimate = estimateMemory(model, lora, { mode: 'lora', ...opts });
    const peft = getPeftModel(model, lora);
    const { trainable, total } = peft.getNbTrainableParameters();
    trainableLine = formatTrainableParameters(trainable, total);
  } catch (err) {
    throw new UsageError(`lowrank inspect: --targets ${targets.join(',')}: ${(err as Error).message}`);
  } finally {
    dispose(model);
  }
  io.out(`LoRA r=${lora.r} on ${targets.join(', ')}: ${trainableLine}`);

  io.out('training memory (float32 weights, AdamW):');
  io.out(renderMemoryTable([full, loraEstimate]));
  return { architecture, parameters, trainableLine, full, lora: loraEstimate };
}

function dispose(model: PreTrainedModel): void {
  for (const p of model.parameters()) p.dispose();
}
