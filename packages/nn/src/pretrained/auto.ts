/**
 * `AutoModelForCausalLM.fromPretrained(source)`: config.json picks the
 * architecture and every size, the weights are checked and loaded, and the
 * model comes back in eval mode (as transformers'). `savePretrained` writes
 * the same layout back.
 */
import { parseConfig, type Gpt2Config, type LlamaConfig, type PretrainedConfig } from './config.ts';
import { GPT2LMHeadModel } from './gpt2.ts';
import { LlamaForCausalLM, MistralForCausalLM } from './llama.ts';
import { Qwen2ForCausalLM } from './qwen2.ts';
import type { PreTrainedModel, PretrainedModelOptions } from './model.ts';
import { checkOptionNames } from './generate.ts';
import { openSource, parseJsonFile, requireFile, type SourceInput } from './source.ts';
import { CONFIG_NAME, GENERATION_CONFIG_NAME, loadPlanned, planWeights, type LoadWeightsOptions } from './weights.ts';

export interface FromPretrainedOptions extends LoadWeightsOptions {
  /** Return the model in training mode (default false: eval, as transformers). */
  train?: boolean;
}

const FROM_PRETRAINED_OPTIONS = ['backend', 'dtype', 'train'];
const FROM_PRETRAINED_HINTS: Record<string, string> = {
  torch_dtype: "use dtype ('float32', 'bfloat16' or 'float16')",
  torchDtype: "use dtype ('float32', 'bfloat16' or 'float16')",
  device_map: 'use backend',
  deviceMap: 'use backend',
  device: 'use backend',
  revision: 'pass a Hub id resolver option instead (see the hub source)',
  trust_remote_code: 'only built-in architectures (gpt2, llama, mistral, qwen2) are supported',
};

/**
 * A freshly initialised model for a config (random weights, transformers' init).
 * @example const model = createModel(parseConfig({ model_type: 'llama', hidden_size: 64, ... }));
 */
export function createModel(config: PretrainedConfig, opts: PretrainedModelOptions = {}): PreTrainedModel {
  switch (config.modelType) {
    case 'gpt2':
      return new GPT2LMHeadModel(config as Gpt2Config, opts);
    case 'llama':
      return new LlamaForCausalLM(config as LlamaConfig, opts);
    case 'mistral':
      return new MistralForCausalLM(config as LlamaConfig, opts);
    case 'qwen2':
      return new Qwen2ForCausalLM(config as LlamaConfig, opts);
  }
}

/**
 * Loads a causal LM from a Hub-layout model directory: a local path (with
 * `@lowrank/nn/node`), a base URL, a file map, a ModelSource, or a Hub id
 * (with the hub resolver). Nothing is allocated before config.json and
 * every safetensors header have been checked.
 * @example const model = await loadPretrained('models/gpt2');
 */
export async function loadPretrained(source: SourceInput, opts: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
  checkOptionNames('fromPretrained', opts, FROM_PRETRAINED_OPTIONS, FROM_PRETRAINED_HINTS);
  const src = await openSource(source);
  const where = `${src.describe}/${CONFIG_NAME}`;
  const config = parseConfig(parseJsonFile(await requireFile(src, CONFIG_NAME, "the model's Hugging Face config, with model_type and sizes"), where), where);
  const tied = config.tieWordEmbeddings ? ['lm_head.weight'] : [];
  const prefix = config.modelType === 'gpt2' ? 'transformer' : 'model';
  const plan = await planWeights(src, config, prefix, tied);
  const genBytes = await src.read(GENERATION_CONFIG_NAME);
  const generationConfig = genBytes ? parseJsonFile(genBytes, `${src.describe}/${GENERATION_CONFIG_NAME}`) : null;
  const model = createModel(config, { backend: 'meta' });
  await loadPlanned(model, src, plan, opts);
  model.tieWeights();
  if (generationConfig && typeof generationConfig === 'object' && !Array.isArray(generationConfig)) {
    model.generationConfig = Object.freeze({ ...(generationConfig as Record<string, unknown>) });
  }
  model.train(opts.train ?? false);
  return model;
}

/**
 * transformers' AutoModelForCausalLM: the architecture comes from config.json's model_type.
 * @example const model = await AutoModelForCausalLM.fromPretrained('models/llama-tiny');
 */
export const AutoModelForCausalLM = {
  fromPretrained: loadPretrained,
  /** A randomly initialised model for a config.json object (transformers' from_config). */
  fromConfig(json: unknown, opts: PretrainedModelOptions = {}): PreTrainedModel {
    return createModel(parseConfig(json), opts);
  },
};
