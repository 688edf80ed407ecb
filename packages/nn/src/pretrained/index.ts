export * from './config.ts';
export * from './source.ts';
export * from './model.ts';
export * from './gpt2.ts';
export * from './llama.ts';
export * from './qwen2.ts';
export * from './generate.ts';
export {
  WEIGHTS_NAME, WEIGHTS_INDEX_NAME, CONFIG_NAME, GENERATION_CONFIG_NAME, widenTensor, planShards, isWeightFile,
  type WeightDtype, type LoadWeightsOptions, type SaveWeightsOptions, type ShardPlan,
} from './weights.ts';
export * from './auto.ts';
