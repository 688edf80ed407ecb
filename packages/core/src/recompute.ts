import { backward, isGradEnabled, noGrad, recordNode, withGrad } from './autograd.ts';
import { globalRng } from './rng.ts';
import { zeros, type Tensor } from './tensor.ts';

/**
 * Activation recomputation (torch.utils.checkpoint, "gradient checkpointing"):
 * runs `fn` without recording its graph and runs it again during backward to
 * get the gradients, trading compute for memory. Only `inputs` are kept in
 * between. Parameters `fn` closes over get their gradients even when no input
 * requires one, and dropout masks replay (the RNG state is restored for the rerun).
 * Not to be confused with checkpoint files (`encodeCheckpoint`, nn's `serializeCheckpoint`).
 * @example const y = recompute((h) => block.forward(h), [x]);
 */
export function recompute(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[]): Tensor {
  const rngState = globalRng.getState();
  const out = noGrad(() => fn(...inputs));
  if (!isGradEnabled()) return out;
  return recordNode('recompute', out, [...inputs], (dy) => {
    const now = globalRng.getState();
    globalRng.setState(rngState);
    const leaves = inputs.map((x) => {
      const d = x.detach();
      if (x.requiresGrad) d.requiresGrad_(true);
      return d;
    });
    let again: Tensor;
    try {
      again = withGrad(() => fn(...leaves));
    } finally {
      globalRng.setState(now);
    }
    // Parameters inside fn are leaves of this inner graph: their .grad accumulates here.
    if (again.requiresGrad) backward(again, dy);
    again.dispose();
    return leaves.map((leaf) => {
      if (!leaf.requiresGrad) return null;
      return () => {
        const g = leaf.grad ?? zeros(leaf.shape, { backend: leaf.backend.name });
        leaf.grad = null;
        return g;
      };
    });
  }, inputs);
}

/** @deprecated Use `recompute` (activation recomputation); "checkpoint" names checkpoint files. */
export const checkpoint = recompute;

