import { backward, isGradEnabled, noGrad, withGrad } from './autograd.ts';
import { globalRng } from './rng.ts';
import type { Tensor } from './tensor.ts';

/**
 * Activation (gradient) checkpointing, like torch.utils.checkpoint: runs `fn`
 * without recording its graph and runs it again during backward to get the
 * gradients, trading compute for memory. Only `inputs` are kept in between.
 * Parameters `fn` closes over get their gradients even when no input requires
 * one, and dropout masks replay (the RNG state is restored for the rerun).
 * @example const y = checkpoint((h) => block.forward(h), [x]);
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[]): Tensor {
  const rngState = globalRng.getState();
  const out = noGrad(() => fn(...inputs));
  if (!isGradEnabled()) return out;
  for (const x of inputs) x.readers++;
  out.requiresGrad = true;
  out.gradFn = {
    op: 'checkpoint',
    inputs: [...inputs],
    reads: [...inputs],
    backward: (dy) => {
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
          const g = leaf.grad ?? zerosLikeOf(leaf);
          leaf.grad = null;
          return g;
        };
      });
    },
  };
  return out;
}

function zerosLikeOf(t: Tensor): Tensor {
  return noGrad(() => t.mul(0));
}
