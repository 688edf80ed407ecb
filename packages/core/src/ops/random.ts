import { getBackend } from '../backend.ts';
import { countUpload } from '../engine.ts';
import { globalRng } from '../rng.ts';
import { checkShape, sizeOf } from '../shape.ts';
import { makeTensor, type Tensor, type TensorOptions } from '../tensor.ts';

type Opts = Omit<TensorOptions, 'shape' | 'dtype'>;

function fromGenerator(op: string, shape: readonly number[], opts: Opts, gen: () => number, dtype: 'float32' | 'int32' = 'float32'): Tensor {
  checkShape(op, shape);
  const b = getBackend(opts.backend);
  const n = sizeOf(shape);
  let data: unknown = null;
  if (b.hasStorage) {
    const values = dtype === 'float32' ? new Float32Array(n) : new Int32Array(n);
    for (let i = 0; i < n; i++) values[i] = gen();
    countUpload(b);
    data = b.upload(values, dtype);
  }
  const t = makeTensor(b, data, shape, dtype);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

/** Uniform in [low, high) from the seeded generator: `rand([2, 3])` */
export function rand(shape: readonly number[], opts: Opts & { low?: number; high?: number } = {}): Tensor {
  const low = opts.low ?? 0;
  const high = opts.high ?? 1;
  return fromGenerator('rand', shape, opts, () => low + (high - low) * globalRng.random());
}

/** Normal(mean, std) from the seeded generator: `randn([4, 4], { std: 0.02 })` */
export function randn(shape: readonly number[], opts: Opts & { mean?: number; std?: number } = {}): Tensor {
  const mean = opts.mean ?? 0;
  const std = opts.std ?? 1;
  return fromGenerator('randn', shape, opts, () => mean + std * globalRng.normal());
}

/** Integers in [low, high): `randint(0, 65, [16, 64])` */
export function randint(low: number, high: number, shape: readonly number[], opts: Opts = {}): Tensor {
  if (!(Number.isInteger(low) && Number.isInteger(high) && high > low)) {
    throw new Error(`randint: need integers low < high, got ${low}, ${high}`);
  }
  return fromGenerator('randint', shape, opts, () => low + Math.floor(globalRng.random() * (high - low)), 'int32');
}

/** 0, 1, ..., n-1 as float32 (or int32 with `{ dtype: 'int32' }`). */
export function arange(n: number, opts: Opts & { dtype?: 'float32' | 'int32' } = {}): Tensor {
  let i = 0;
  return fromGenerator('arange', [n], opts, () => i++, opts.dtype ?? 'float32');
}
