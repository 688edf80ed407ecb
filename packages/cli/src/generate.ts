/** `lowrank generate`: continue a prompt with a model, optionally with a PEFT adapter. */
import { tidy } from '@lowrank/core';
import type { CommandSpec, FlagValue } from './args.ts';
import { loadAdapter, loadModel, loadTokenizer, type Io } from './load.ts';

export const generateSpec: CommandSpec = {
  name: 'generate',
  summary: 'Continue a prompt (greedy unless --temperature/--top-k/--top-p ask for sampling).',
  flags: {
    model: { type: 'string', required: true, value: '<dir|url|org/name>', help: 'the base model' },
    adapter: { type: 'string', value: '<dir>', help: 'a PEFT LoRA adapter to apply' },
    prompt: { type: 'string', required: true, value: '<text>', help: 'the text to continue' },
    'max-new-tokens': { type: 'int', default: 32, value: '<n>', help: 'tokens to generate at most' },
    temperature: { type: 'number', value: '<x>', help: 'sample with this temperature' },
    'top-k': { type: 'int', value: '<k>', help: 'sample among the k most likely tokens' },
    'top-p': { type: 'number', value: '<p>', help: 'nucleus sampling' },
    'repetition-penalty': { type: 'number', value: '<x>', help: '> 1 discourages repeats' },
    seed: { type: 'int', default: 0, value: '<n>', help: 'seed for sampling' },
    chat: { type: 'bool', default: false, help: "wrap the prompt as a user message with the tokenizer's chat template" },
  },
  examples: ['lowrank generate --model ./gpt2 --adapter ./gpt2-lora --prompt "The jury said" --max-new-tokens 20'],
};

/** Runs generate; returns the generated text (without the prompt). */
export async function generateCommand(flags: Record<string, FlagValue>, io: Io): Promise<{ text: string; ids: number[] }> {
  const model = await loadModel(flags.model as string);
  const tok = await loadTokenizer(flags.model as string);
  if (flags.adapter !== undefined) await loadAdapter(model, flags.adapter as string);
  const prompt = flags.prompt as string;
  const promptIds = flags.chat
    ? tok.applyChatTemplate([{ role: 'user', content: prompt }], { addGenerationPrompt: true })
    : tok.encode(prompt);
  if (promptIds.length === 0) throw new Error('lowrank generate: the prompt encodes to no tokens');
  const sampling = ['temperature', 'top-k', 'top-p'].some((k) => flags[k] !== undefined);
  const ids = tidy(() => {
    const out = model.generate([promptIds], {
      maxNewTokens: flags['max-new-tokens'] as number,
      doSample: sampling,
      ...(flags.temperature !== undefined && { temperature: flags.temperature as number }),
      ...(flags['top-k'] !== undefined && { topK: flags['top-k'] as number }),
      ...(flags['top-p'] !== undefined && { topP: flags['top-p'] as number }),
      ...(flags['repetition-penalty'] !== undefined && { repetitionPenalty: flags['repetition-penalty'] as number }),
      ...(tok.eosTokenId !== null && { eosTokenId: tok.eosTokenId }),
      ...(sampling && { seed: flags.seed as number }),
    });
    return (out.toArray() as number[][])[0].slice(promptIds.length);
  });
  // Finished rows are padded after the stop id; the text ends at it.
  const eos = tok.eosTokenId;
  const stop = eos === null ? -1 : ids.indexOf(eos);
  const kept = stop >= 0 ? ids.slice(0, stop) : ids;
  const text = tok.decode(kept, { skipSpecialTokens: true });
  io.out(`${prompt}${text}`);
  return { text, ids };
}
