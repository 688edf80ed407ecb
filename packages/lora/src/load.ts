import type { Module } from '@lowrank/nn';
import type { LoraConfig } from './config.ts';
import { PEFT_PREFIX, setPeftModelStateDict, type AdapterValue } from './peft-format.ts';
import { PeftModel } from './peft-model.ts';
import { planTargets } from './tuner.ts';

const TRANSFORMERS_DECODER = 'model.';

/**
 * Checks every lora_A / lora_B tensor of a file against what `config` would
 * create in `model` (targets, r, in/out features) before anything is allocated:
 * a file claiming r = 1e6 fails here, not after a 500 MB allocation.
 * @example checkLoraTensors(model, cfg, tensors)
 */
export function checkLoraTensors(model: Module, config: LoraConfig, tensors: ReadonlyMap<string, AdapterValue>, what = 'adapter'): void {
  const want = new Map<string, number[]>();
  for (const t of planTargets(model, config)) {
    want.set(`${t.name}.lora_A.weight`, [t.r, t.inFeatures]);
    want.set(`${t.name}.lora_B.weight`, [t.outFeatures, t.r]);
  }
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [rawKey, v] of tensors) {
    let key = rawKey.startsWith(PEFT_PREFIX) ? rawKey.slice(PEFT_PREFIX.length) : rawKey;
    if (!/\.lora_[AB]\.weight$/.test(key)) continue; // biases and modules_to_save: checked by setPeftModelStateDict
    if (!want.has(key) && key.startsWith(TRANSFORMERS_DECODER) && want.has(key.slice(TRANSFORMERS_DECODER.length))) {
      key = key.slice(TRANSFORMERS_DECODER.length);
    }
    const shape = want.get(key);
    if (!shape) {
      problems.push(`tensor '${rawKey}' does not map onto any adapter parameter of the model (config targets ${want.size / 2} module(s))`);
      continue;
    }
    seen.add(key);
    if (v.shape.length !== shape.length || v.shape.some((d, i) => d !== shape[i])) {
      problems.push(`tensor '${rawKey}' has shape [${[...v.shape].join(', ')}], the config and model give [${shape.join(', ')}]`);
    }
  }
  for (const k of want.keys()) if (!seen.has(k)) problems.push(`missing tensor '${k}'`);
  if (problems.length) throw new Error(`loading ${what}:\n  ${problems.join('\n  ')}`);
}

/**
 * Adds an adapter with these tensors to a model (a plain model becomes a PeftModel).
 * Config, targets and every lora shape are checked before the first allocation;
 * if anything fails the model (modules, parameters, requiresGrad flags, adapters) is as before.
 * @example const peft = addAdapterFromTensors(model, cfg, tensors, 'default');
 */
export function addAdapterFromTensors(
  model: Module, config: LoraConfig, tensors: ReadonlyMap<string, AdapterValue>, adapterName: string, what = `adapter '${adapterName}'`,
): PeftModel {
  const fill = (tuner: PeftModel['baseModel']): void => setPeftModelStateDict(tuner, tensors as Map<string, AdapterValue>, adapterName);
  if (model instanceof PeftModel) {
    checkLoraTensors(model.baseModel.model, config, tensors, what);
    model.baseModel.injectThen(adapterName, config, () => fill(model.baseModel));
    return model;
  }
  checkLoraTensors(model, config, tensors, what);
  return new PeftModel(model, config, adapterName, fill);
}
