import { Scratch, arenaBuffer, inArena } from './arena.ts';
import { ROW_KERNELS, rowKernelIndex, type RowKernelName, type RowViews } from './row-kernels.ts';
import { runParallel, threadsFor } from './threads.ts';
import { wasmRuntime } from './wasm-module.ts';
import { JOB_ROWS, MAX_TILES, ROW_HEADER_WORDS, ROW_MAX_ARRAYS, ROW_MAX_SCALARS } from './worker-source.ts';

/**
 * Below this much work (elements touched) a row kernel runs on the calling
 * thread: waking the pool costs tens of microseconds.
 */
export const PARALLEL_ROWS_MIN = 1 << 15;
/** Work per tile at least, so that handing out a tile costs little next to running it. */
const MIN_TILE_WORK = 1 << 13;

function typeCode(x: RowViews[number]): number {
  if (x === null) return 0;
  if (x instanceof Float32Array) return 1;
  return x instanceof Int32Array ? 2 : 3;
}

/**
 * Runs row kernel `name` over `units` units (rows, columns or elements; see
 * row-kernels.ts) with `work` elements touched in all: split across the pool
 * when the work is large enough and every array lives in the shared memory,
 * else on this thread. Either way each unit runs the same code, so the bits
 * do not depend on the thread count. `op` names the kernel in errors.
 */
/** Whether runRows would split this job across the pool (else it runs on the calling thread). */
export function splits(views: RowViews, units: number, work: number): boolean {
  return units > 1 && threadsFor(work, PARALLEL_ROWS_MIN) > 1 && views.every((x) => x === null || inArena(x));
}

export function runRows(op: string, name: RowKernelName, views: RowViews, nums: readonly number[], units: number, work: number): void {
  const fn = ROW_KERNELS[name];
  const s = Float64Array.from(nums);
  const T = units > 1 ? threadsFor(work, PARALLEL_ROWS_MIN) : 1;
  const count = Math.min(3 * T, units, Math.ceil(work / MIN_TILE_WORK), MAX_TILES - 1);
  const rt = T > 1 && count > 1 ? wasmRuntime() : null;
  if (rt === null || !views.every((x) => x === null || inArena(x))) {
    fn(views, s, 0, units);
    return;
  }
  if (views.length > ROW_MAX_ARRAYS || nums.length > ROW_MAX_SCALARS) throw new Error(`${op}: row kernel ${name} takes too many arguments`);
  const scratch = new Scratch();
  const desc = scratch.take(ROW_HEADER_WORDS * 4 + ROW_MAX_SCALARS * 8);
  try {
    if (!scratch.ok) {
      fn(views, s, 0, units);
      return;
    }
    const buf = arenaBuffer(rt);
    const h = new Int32Array(buf, desc, ROW_HEADER_WORDS);
    h[0] = rowKernelIndex(name);
    h[1] = units;
    h[2] = count;
    h[3] = views.length;
    views.forEach((x, a) => {
      h[4 + 3 * a] = x ? x.byteOffset : 0;
      h[5 + 3 * a] = x ? x.length : 0;
      h[6 + 3 * a] = typeCode(x);
    });
    new Float64Array(buf, desc + ROW_HEADER_WORDS * 4, ROW_MAX_SCALARS).set(s);
    const lo = (i: number): number => Math.floor((i * units) / count);
    const ran = runParallel(op, JOB_ROWS, T, desc, count, (i) => fn(views, s, lo(i), lo(i + 1)));
    if (!ran) fn(views, s, 0, units);
  } finally {
    scratch.done();
  }
}
