/** Loading what the commands share: model, tokenizer, adapter (directories, URLs and Hub ids). */
import { existsSync } from 'node:fs';
import { AutoModelForCausalLM, AutoTokenizer, type PreTrainedModel, type PreTrainedTokenizer } from '@lowrank/nn';
import '@lowrank/nn/node';
import { DEFAULT_TARGETS, PeftModel } from '@lowrank/lora';
import type { FlagValue } from './args.ts';

/** What a command prints to: result lines, and progress/notes (stderr in a terminal). */
export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Passed to nn's train(): true draws the bar on stderr, a function gets each line. */
  progress: boolean | ((line: string) => void);
}

/** The modules LoRA adapts unless --targets says: PEFT's defaults for the model_type, else q_proj, v_proj. */
export function targetsFor(modelType: string, flag: FlagValue | undefined): string[] {
  return (flag as string[] | undefined) ?? [...(DEFAULT_TARGETS[modelType] ?? ['q_proj', 'v_proj'])];
}

/**
 * A model by directory, URL or Hub id, with an error that says what was looked for.
 *
 * @example const model = await loadModel('models/gpt2', { train: true })
 */
export async function loadModel(spec: string, opts: { train?: boolean; dtype?: string } = {}): Promise<PreTrainedModel> {
  try {
    return await AutoModelForCausalLM.fromPretrained(spec, {
      train: opts.train ?? false,
      ...(opts.dtype !== undefined && { dtype: opts.dtype as 'float32' }),
    });
  } catch (err) {
    throw new Error(`--model ${spec}: ${(err as Error).message}${hintFor(spec)}`);
  }
}

/** The tokenizer stored with a model. @example const tok = await loadTokenizer('models/gpt2') */
export async function loadTokenizer(spec: string): Promise<PreTrainedTokenizer> {
  try {
    return await AutoTokenizer.fromPretrained(spec);
  } catch (err) {
    throw new Error(`--model ${spec}: ${(err as Error).message}`);
  }
}

/** Wraps `model` with the PEFT adapter at `spec` (frozen). */
export async function loadAdapter(model: PreTrainedModel, spec: string): Promise<PeftModel<PreTrainedModel>> {
  try {
    return await PeftModel.fromPretrained(model, spec);
  } catch (err) {
    throw new Error(`--adapter ${spec}: ${(err as Error).message}`);
  }
}

function hintFor(spec: string): string {
  if (existsSync(spec) || /^https?:\/\//.test(spec)) return '';
  return /^[\w.-]+\/[\w.-]+$/.test(spec) ? '' : ' (expected a model directory, an http(s) URL or a Hub id org/name)';
}

/** `1234567` -> `'1,234,567'`. */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}
