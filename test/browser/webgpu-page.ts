// The in-page half of webgpu.browser.ts, bundled by esbuild and run on a
// localhost page in Chromium: gpu.js's webgpu mode against the cpu backend.
import fc from 'fast-check';
import {
  CpuBackend, GpuBackend, add, gelu, layerNorm, matmul, memory, probeWebGpu, registerBackend, sum, tensor, tidy,
  type Backend, type HostArray, type Tensor,
} from '@lowrank/core';
import { AdamW, TransformerLM, trainStepAsync, type Batch, type TransformerConfig } from '@lowrank/nn';
import { getPeftModel, setPeftModelStateDict } from '@lowrank/lora';
import { lcg, mismatch, randArray, type Input } from '../gpu/harness.ts';
import { table } from '../gpu/parity.test.ts';

interface FixtureTensor { shape: number[]; data: number[] }
export interface LoraFixture {
  config: TransformerConfig;
  lora: { r: number; loraAlpha: number; loraDropout: number; targetModules: string[]; bias: 'none'; useRslora: boolean };
  stateDict: Record<string, FixtureTensor>;
  loraStateDict: Record<string, FixtureTensor>;
  inputIds: FixtureTensor;
  targets: FixtureTensor;
  loss: number;
}

const cpu = new CpuBackend('cpu-page');
let webgpu: GpuBackend | null = null;

function backend(): GpuBackend {
  if (!webgpu) throw new Error('webgpu backend not started: call probe() first');
  return webgpu;
}

/** Asks for the adapter; starts the webgpu backend (and a webgl2 one for timings) when it answers. */
async function probe(): Promise<{ available: boolean; reason?: string; adapter?: string; features?: string[]; mode?: string; secure: boolean }> {
  const p = await probeWebGpu();
  if (p.available && !webgpu) {
    webgpu = new GpuBackend({ mode: 'webgpu', name: 'webgpu' });
    registerBackend('webgpu', webgpu);
    registerBackend('webgl2', new GpuBackend({ mode: 'webgl2', name: 'webgl2' }));
  }
  return { ...p, mode: webgpu?.mode, secure: isSecureContext };
}

/** Uploads, runs, reads every output back asynchronously, frees. */
async function runAsync(be: Backend, inputs: readonly Input[], fn: (be: Backend, d: unknown[]) => unknown, sizes: readonly number[]): Promise<HostArray[]> {
  const d = inputs.map((x) => be.upload(x.values, x.dtype));
  const res = fn(be, d);
  const outs = Array.isArray(res) ? res : [res];
  const host = outs.map((o, i) => (be.downloadAsync ? be.downloadAsync(o, 'float32', sizes[i]) : Promise.resolve(be.download(o, 'float32', sizes[i]))));
  for (const o of outs) if (o !== null && !d.includes(o)) be.free(o);
  for (const x of d) be.free(x);
  return Promise.all(host);
}

/** Every kernel family of the parity table on webgpu vs cpu: the families run and their first mismatch, if any. */
async function parity(runs: number): Promise<{ families: string[]; failures: string[]; degraded: number }> {
  const failures: string[] = [];
  let degraded = 0;
  for (const [name, arb] of Object.entries(table)) {
    // A fresh backend per family: a failed dispatch makes its backend's later dispatches throw.
    const be = new GpuBackend({ mode: 'webgpu', name: `webgpu-${name}` });
    for (const c of fc.sample(arb, { numRuns: runs, seed: 42 })) {
      try {
        const got = await runAsync(be, c.inputs, c.run, c.sizes);
        const want = await runAsync(cpu, c.inputs, c.run, c.sizes);
        const bad = got.map((g, i) => mismatch(g, want[i], c.rtol ?? 2e-4)).findIndex((m) => m !== null);
        if (bad >= 0) {
          failures.push(`${name} output ${bad}: ${mismatch(got[bad], want[bad], c.rtol ?? 2e-4)}`);
          break;
        }
      } catch (e) {
        failures.push(`${name}: ${(e as Error).message.split('\n').slice(0, 2).join(' ')}`);
        break;
      }
    }
    degraded += be.degradedKernels;
  }
  return { families: Object.keys(table), failures, degraded };
}

/** webgpu's 4-column matmul (N % 4 == 0) against cpu: transposes, bias, broadcast batches, ragged M and K. */
async function matmul4(): Promise<{ cases: number; failures: string[]; dispatches: Record<string, number> }> {
  const be = new GpuBackend({ mode: 'webgpu', name: 'webgpu-matmul4' });
  const rnd = lcg(7);
  const failures: string[] = [];
  const shapes: [number[], number, number, number][] = [[[], 5, 8, 3], [[2], 3, 12, 7], [[2, 1], 1, 4, 1], [[], 33, 16, 65], [[3], 2, 4, 9]];
  let cases = 0;
  for (const [batch, m, n, k] of shapes) {
    for (const [ta, tb, bias] of [[false, false, false], [true, false, true], [false, true, false], [true, true, true]] as const) {
      const as = [...batch.slice(1), ...(ta ? [k, m] : [m, k])];
      const bs = [...batch, ...(tb ? [n, k] : [k, n])];
      const out = [...batch, m, n];
      const inputs: Input[] = [as, bs, ...(bias ? [[n]] : [])].map((s) => ({ values: randArray(s.reduce((p, q) => p * q, 1), rnd), dtype: 'float32' }));
      const run = (b: Backend, [a, bb, bi]: unknown[]) => b.matmul({ inputs: { a, b: bb, bias: bi ?? null }, attrs: { aShape: as, bShape: bs, transA: ta, transB: tb, outShape: out } });
      const size = out.reduce((p, q) => p * q, 1);
      const [got] = await runAsync(be, inputs, run, [size]);
      const [want] = await runAsync(cpu, inputs, run, [size]);
      const m_ = mismatch(got, want);
      if (m_) failures.push(`matmul ${JSON.stringify({ as, bs, ta, tb, bias })}: ${m_}`);
      cases++;
    }
  }
  return { cases, failures, dispatches: Object.fromEntries(be.dispatchCounts) };
}

/** A cache of 2 kernels under 6 families, each result kept: kernels are destroyed while their outputs live. */
async function eviction(): Promise<{ evictions: number; got: number[]; want: number[]; deviceBuffers: number }> {
  const be = new GpuBackend({ mode: 'webgpu', name: 'webgpu-evict', maxKernels: 2 });
  registerBackend(be.name, be);
  const x = tensor([0.5, -1.25, 2, 3.5], { backend: be.name });
  const ops = [(t: Tensor) => t.exp(), (t: Tensor) => t.mul(t), (t: Tensor) => t.tanh(), (t: Tensor) => t.add(1), (t: Tensor) => t.neg(), (t: Tensor) => t.sigmoid()];
  const kept = ops.map((f) => f(x));
  const got = (await Promise.all(kept.map((t) => t.data()))).flatMap((d) => Array.from(d));
  const want = ops.map((f) => Array.from(f(tensor([0.5, -1.25, 2, 3.5])).dataSync())).flat();
  for (const t of [x, ...kept]) t.dispose();
  await be.flush();
  return { evictions: be.kernelEvictions, got, want, deviceBuffers: be.queue?.liveDeviceBuffers ?? -1 };
}

/** What each synchronous reader says on webgpu, and what the async ones read. */
async function readers(): Promise<{ errors: string[]; data: number[]; item: number; array: unknown }> {
  const t = tensor([1.5, -2, 3.25], { backend: 'webgpu' });
  const s = sum(t);
  const errors: string[] = [];
  for (const read of [() => t.dataSync(), () => t.toArray(), () => s.item()]) {
    try {
      read();
      errors.push('no error');
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  const out = { errors, data: Array.from(await t.data()), item: await s.itemAsync(), array: await t.array() };
  t.dispose();
  s.dispose();
  return out;
}

function peftOn(fx: LoraFixture, name: string) {
  const model = new TransformerLM(fx.config);
  model.loadStateDict(fx.stateDict);
  const { r, loraAlpha, loraDropout, targetModules, bias, useRslora } = fx.lora;
  const peft = getPeftModel(model, { r, loraAlpha, loraDropout, targetModules, bias, useRslora });
  setPeftModelStateDict(peft.baseModel, fx.loraStateDict, 'default');
  if (name !== 'cpu') peft.to(name);
  return peft;
}

function batchOf(fx: LoraFixture): Batch {
  const [rows, cols] = fx.inputIds.shape;
  return {
    x: Int32Array.from(fx.inputIds.data), y: Int32Array.from(fx.targets.data), shape: [rows, cols],
    offsets: Int32Array.from({ length: rows }, (_, i) => i * cols),
  };
}

/** LoRA steps with trainStepAsync on one backend: losses, step times, dispatches per step, then generateAsync. */
async function lora(fx: LoraFixture, name: string, steps: number): Promise<{ losses: number[]; stepMs: number[]; dispatches: number; tokens: number[][] }> {
  const peft = peftOn(fx, name);
  const opt = new AdamW(peft.trainableParameters(), { lr: 1e-2, weightDecay: 0 });
  const batch = batchOf(fx);
  const losses: number[] = [];
  const stepMs: number[] = [];
  let dispatches = 0;
  for (let i = 0; i < steps; i++) {
    const d0 = memory(name).dispatches;
    const t0 = performance.now();
    losses.push((await trainStepAsync(peft, opt, batch)).loss);
    stepMs.push(performance.now() - t0);
    dispatches = memory(name).dispatches - d0;
  }
  peft.eval();
  const prompt = tensor([fx.inputIds.data.slice(0, 3)], { dtype: 'int32', backend: name });
  const out = await peft.getBaseModel().generateAsync(prompt, { maxNewTokens: 4, temperature: 0 });
  const tokens = (await out.array()) as number[][];
  prompt.dispose();
  out.dispose();
  for (const p of peft.parameters()) p.dispose();
  opt.dispose();
  return { losses, stepMs, dispatches, tokens };
}

interface Counters { liveTensors: number; liveBytes: number; liveBuffers: number; deviceBuffers: number }

/** A backend of its own, so tensors other calls leave to the garbage collector do not move its counters. */
let leakBackend: GpuBackend | null = null;

async function counters(): Promise<Counters> {
  const be = leakBackend as GpuBackend;
  await be.flush();
  const m = memory(be.name);
  return { liveTensors: m.liveTensors, liveBytes: m.liveBytes, liveBuffers: be.liveBuffers, deviceBuffers: be.queue?.liveDeviceBuffers ?? -1 };
}

/** Counters before, while 20 forward+backward steps' tensors are alive, and after they are disposed. */
async function leaks(): Promise<{ before: Counters; held: Counters; after: Counters }> {
  backend();
  leakBackend ??= new GpuBackend({ mode: 'webgpu', name: 'webgpu-leaks' });
  registerBackend(leakBackend.name, leakBackend);
  const on = leakBackend.name;
  const x = tensor(Float32Array.from({ length: 32 }, (_, i) => Math.sin(i + 1)), { shape: [4, 8], backend: on });
  const w = tensor(Float32Array.from({ length: 64 }, (_, i) => Math.cos(i + 1) / 4), { shape: [8, 8], requiresGrad: true, backend: on });
  const before = await counters();
  const kept: Tensor[] = [];
  for (let i = 0; i < 20; i++) {
    kept.push(tidy(() => {
      const y = layerNorm(gelu(add(matmul(x, w, { transposeB: true }), x)), null, null);
      const l = sum(y.mul(y));
      l.backward();
      return l;
    }));
    w.grad?.dispose();
    w.grad = null;
  }
  const held = await counters();
  for (const t of kept) t.dispose();
  const after = await counters();
  x.dispose();
  w.dispose();
  return { before, held, after };
}

/** The error a webgpu backend gives where no adapter answered. */
function startError(): string {
  try {
    new GpuBackend({ mode: 'webgpu', name: 'webgpu-unavailable' });
    return 'no error';
  } catch (e) {
    return (e as Error).message;
  }
}

const api = { probe, parity, matmul4, eviction, readers, lora, leaks, startError };
export type WebGpuPageApi = typeof api;
(globalThis as { lowrankWebgpu?: typeof api }).lowrankWebgpu = api;
document.body.dataset.state = 'ready';
