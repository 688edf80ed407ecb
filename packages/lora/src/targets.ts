/**
 * PEFT's default LoRA target modules per `config.json` model_type (its
 * TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, for the architectures lowrank loads).
 */
export const DEFAULT_TARGETS: Readonly<Record<string, readonly string[]>> = {
  gpt2: ['c_attn'],
  llama: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
};

/**
 * The modules PEFT adapts by default for a model_type; an unknown type is an error naming the known ones.
 * @example getPeftModel(model, { r: 8, targetModules: defaultTargetModules(model.config.modelType) });
 */
export function defaultTargetModules(modelType: string): string[] {
  const t = Object.hasOwn(DEFAULT_TARGETS, modelType) ? DEFAULT_TARGETS[modelType] : undefined;
  if (!t) throw new Error(`defaultTargetModules: no default LoRA targets for model_type '${modelType}' (known: ${Object.keys(DEFAULT_TARGETS).join(', ')}); pass targetModules`);
  return [...t];
}
