import { isHalfDtype, type Backend, type DType, type HostArray } from '../backend.ts';

const none = (): null => null;

/**
 * Shapes only: every kernel returns no storage, so a 7B-parameter model builds
 * instantly and a forward pass sizes its activations without computing them.
 */
export class MetaBackend implements Backend<null> {
  readonly name = 'meta';
  readonly mode = 'meta';
  readonly hasStorage = false;

  /** What the cpu backend would take: a 16-bit base model sizes at 2 bytes per weight. */
  bytesPerElement(dtype: DType): number {
    return isHalfDtype(dtype) ? 2 : 4;
  }

  upload(): null {
    return null;
  }

  download(_data: unknown, dtype: DType, size: number): HostArray {
    throw new Error(`meta backend: a ${dtype} tensor of ${size} elements has no values to read`);
  }

  free(): void {}

  fill = none;
  cast = none;
  unary = none;
  unaryGrad = none;
  affine = none;
  powScalar = none;
  binary = none;
  where = none;
  reduce = none;
  matmul = none;
  strided = none;
  stridedAdd = none;
  concat = none;
  gather = none;
  scatterAdd = none;
  indexSelect = none;
  indexAdd = none;
  softmax = none;
  softmaxGrad = none;
  crossEntropy = none;
  crossEntropyGrad = none;
  layerNorm = () => ({ y: null, mean: null, rstd: null });
  layerNormGrad = () => ({ dx: null, dw: null, db: null });
  rmsNorm = () => ({ y: null, rstd: null });
  rmsNormGrad = () => ({ dx: null, dw: null });
  attention = () => ({ out: null, lse: null });
  attentionGrad = () => ({ dq: null, dk: null, dv: null });
  adamUpdate = () => ({ p: null, m: null, v: null });
}
