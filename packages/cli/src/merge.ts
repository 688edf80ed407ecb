/** `lowrank merge`: fold a PEFT adapter into the base weights and write a plain Hub-layout model. */
import { openSink } from '@lowrank/nn';
import type { CommandSpec, FlagValue } from './args.ts';
import { loadAdapter, loadModel, loadTokenizer, type Io } from './load.ts';

export const mergeSpec: CommandSpec = {
  name: 'merge',
  summary: "Merge a LoRA adapter into the model (W + B A * scaling) and save it with the tokenizer, loadable by transformers' from_pretrained.",
  flags: {
    model: { type: 'string', required: true, value: '<dir|url|org/name>', help: 'the base model' },
    adapter: { type: 'string', required: true, value: '<dir>', help: 'the PEFT LoRA adapter' },
    out: { type: 'string', required: true, value: '<dir>', help: 'where the merged model is written' },
    'max-shard-size': { type: 'int', value: '<bytes>', help: 'shard model.safetensors above this size' },
  },
  examples: ['lowrank merge --model ./gpt2 --adapter ./gpt2-lora --out ./gpt2-merged'],
};

/** Runs merge; returns the file names written. */
export async function mergeCommand(flags: Record<string, FlagValue>, io: Io): Promise<string[]> {
  const model = await loadModel(flags.model as string);
  const peft = await loadAdapter(model, flags.adapter as string);
  const tok = await loadTokenizer(flags.model as string).catch(() => null);
  const merged = peft.mergeAndUnload();
  const out = flags.out as string;
  // The tokenizer files go through the same sink, so all files appear together.
  const sink = await openSink(out);
  const tokenizerFiles = tok ? [...tok.files.keys()] : [];
  for (const [name, bytes] of tok?.files ?? []) await sink.write(name, bytes);
  const maxShardSize = flags['max-shard-size'] as number | undefined;
  const weights = await merged.savePretrained(sink, maxShardSize === undefined ? {} : { maxShardSize });
  const files = [...weights, ...tokenizerFiles].sort();
  if (!tok) io.err(`note: ${flags.model as string} has no tokenizer.json; the merged model has none either`);
  io.out(`merged ${flags.adapter as string} into ${flags.model as string}; wrote ${out}: ${files.join(', ')}`);
  return files;
}
