/**
 * The LoRA side of the bench: a PEFT-wrapped W2 model (r=8, alpha=16 on
 * q_proj and v_proj, base frozen) for training, and the unmerged / merged
 * variants for W3 latency. Loaded by the worker only when LoRA is measured.
 */
import { manualSeed, type Tensor } from '@lowrank/core';
import { normal_, type TransformerLM } from '@lowrank/nn';
import { getPeftModel, type LoraConfigInput, type PeftModel } from '@lowrank/lora';
import '@lowrank/lora/node';
import { LORA } from './common.ts';
import type { LatencyVariant, Trainee } from './protocol.ts';

/** r, alpha and target linears of one LoRA run. */
export interface LoraSettings {
  r: number;
  alpha: number;
  targets: readonly string[];
}

export const loraConfig = (s: LoraSettings = LORA): LoraConfigInput => ({ r: s.r, loraAlpha: s.alpha, targetModules: [...s.targets] });

/** Wraps the base model; only the adapters train; the artifact is the native adapter file (`saveAdapter`). */
export async function loraTrainee(base: TransformerLM, settings: LoraSettings = LORA): Promise<Trainee> {
  const peft = getPeftModel(base, loraConfig(settings));
  const trainable = peft.trainableParameters();
  const { trainable: counted } = peft.getNbTrainableParameters();
  const own = trainable.reduce((s, p) => s + p.size, 0);
  if (counted !== own) throw new Error(`lora: getNbTrainableParameters() says ${counted} trainable, the parameters sum to ${own}`);
  return {
    model: peft,
    trainable,
    artifactKind: 'lora-adapter',
    save: async (dir) => {
      await peft.saveAdapter(dir);
    },
    lora: { r: settings.r, alpha: settings.alpha, targets: [...settings.targets] },
  };
}

/** Gives every lora_B non-zero values (seeded, N(0, 0.02)), so merging changes the weights. */
function perturb(peft: PeftModel<TransformerLM>, seed: number): void {
  manualSeed(seed);
  for (const [, layer] of peft.baseModel.loraLayers()) for (const name of layer.adapterNames()) normal_(layer.loraB.get(name).weight, 0, 0.02);
}

/**
 * W3 variants from fresh copies of the same base: LoRA unmerged (adapter
 * branch computed every forward), merged in place (`merge()`: the layers are
 * still LoraLinear), and merged then unloaded (`mergeAndUnload()`: plain Linears).
 */
export function latencyVariants(build: () => TransformerLM, seed: number): { variants: LatencyVariant[]; close(): void } {
  const unmerged = getPeftModel(build(), loraConfig());
  perturb(unmerged, seed + 1000);
  const merged = getPeftModel(build(), loraConfig());
  perturb(merged, seed + 1000);
  merged.merge();
  const unloadedPeft = getPeftModel(build(), loraConfig());
  perturb(unloadedPeft, seed + 1000);
  const unloaded = unloadedPeft.mergeAndUnload();
  const all: { parameters(): Tensor[] }[] = [unmerged, merged, unloaded];
  return {
    variants: [
      { name: 'lora unmerged', model: unmerged },
      { name: 'lora merged', model: merged },
      { name: 'merged + unloaded', model: unloaded },
    ],
    close: () => {
      for (const m of all) for (const p of m.parameters()) p.dispose();
    },
  };
}
