import type { AdamHyper } from '../backend.ts';
import { runKernel } from '../engine.ts';
import { shapesEqual } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { backendOf, requireFloat } from './util.ts';

/**
 * One fused Adam/AdamW step, in place: updates `param`, `expAvg` and `expAvgSq`
 * from `grad` (no graph; `h.decoupled` picks AdamW's decay over Adam's L2 term).
 * `adamwUpdate_(w, w.grad, m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1, decoupled: true })`
 */
export function adamwUpdate_(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, h: AdamHyper): void {
  const ts = [param, grad, expAvg, expAvgSq];
  requireFloat('adamwUpdate_', ...ts);
  const b = backendOf('adamwUpdate_', ...ts);
  for (const t of ts) {
    if (!shapesEqual(t.shape, param.shape)) {
      throw new Error(`adamwUpdate_: every tensor must have the parameter's shape ${param.describe()}, got ${t.describe()}`);
    }
  }
  if (!b.hasStorage) return;
  const out = runKernel(b, 'adamUpdate', undefined, {
    inputs: { p: param.data_, g: grad.data_, m: expAvg.data_, v: expAvgSq.data_ }, attrs: { size: param.size, hyper: h },
  });
  // The kernel may update in place or hand back fresh storages.
  if (out.p !== param.data_) param.setStorageData(out.p);
  if (out.m !== expAvg.data_) expAvg.setStorageData(out.m);
  if (out.v !== expAvgSq.data_) expAvgSq.setStorageData(out.v);
}
