import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GpuBackend, crossEntropy, manualSeed, memory, registerBackend, tensor, tidy, type GpuMode,
} from '@lowrank/core';
import { AdamW, TransformerLM, w2 } from '@lowrank/nn';
import { getPeftModel } from '@lowrank/lora';
import { lcg, randArray } from './harness.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

const GL_MODES: readonly GpuMode[] = ['headlessgl', 'webgl2', 'webgl'];

/** A LoRA training step of a 2-layer model at batch 2 x T on backend `name`. */
function loraStepper(name: string): (T: number) => void {
  manualSeed(0);
  const cfg = { ...w2(17), blockSize: 16, nLayer: 2, nEmbd: 32, nHead: 2, headDim: 16, intermediateSize: 64 };
  const peft = getPeftModel(new TransformerLM(cfg, { backend: name }), { r: 4, loraAlpha: 8, targetModules: ['q_proj', 'v_proj'] });
  peft.train();
  const opt = new AdamW(peft.trainableParameters(), { lr: 1e-3 });
  const rnd = lcg(7);
  return (T: number) => tidy(() => {
    const ids = Int32Array.from({ length: 2 * T }, () => Math.floor(rnd() * 17));
    const ys = Int32Array.from({ length: 2 * T }, () => Math.floor(rnd() * 17));
    const x = tensor(ids, { shape: [2, T], dtype: 'int32', backend: name });
    const y = tensor(ys, { shape: [2, T], dtype: 'int32', backend: name });
    opt.zeroGrad();
    const { loss } = peft.forward(x, { targets: y });
    loss!.backward();
    opt.step();
    assert.ok(Number.isFinite(loss!.item()));
  });
}

for (const mode of modesUnderTest) {
  describe(`gpu kernel compiles (${mode})`, () => {
    const gl = GL_MODES.includes(mode);
    test(gl
      ? 'a new sequence length compiles nothing after warm-up (sizes are uniforms)'
      : 'webasm compiles one module per size signature (gpu.js bakes sizes into wasm), and every step after warm-up none', () => {
      const be = backendFor(mode);
      const step = loraStepper(be.name);
      step(8);
      step(8);
      const warm = memory(be.name).compiles;
      step(8);
      assert.equal(memory(be.name).compiles, warm, 'the same shapes compiled again');
      step(5);
      const afterNew = memory(be.name).compiles;
      if (gl) assert.equal(afterNew, warm, `a new sequence length compiled ${afterNew - warm} kernels on ${mode}`);
      else assert.ok(afterNew > warm, 'webasm: a new size signature should build new modules');
      step(5);
      assert.equal(memory(be.name).compiles, afterNew, 'the new shapes compiled again');
      step(8);
      // NOTE: on webasm the LRU bound may have evicted the T = 8 modules by now.
      if (gl) assert.equal(memory(be.name).compiles, afterNew, 'sizes seen before compiled again');
      console.log(`${mode}: compiles at warm-up ${warm}, for a new sequence length ${afterNew - warm}`);
    });

    if (gl) {
      test('a shorter loop reuses the kernel compiled for a longer one', () => {
        const be = backendFor(mode);
        const rnd = lcg(9);
        const sum = (n: number): number => {
          const x = be.upload(randArray(n, rnd), 'float32');
          const y = be.reduce({ inputs: { x }, attrs: { op: 'sum', shape: [n], axes: [0] } });
          const v = (be.download(y, 'float32', 1) as Float32Array)[0];
          be.free(x);
          be.free(y);
          return v;
        };
        sum(1500);
        const before = be.kernelCompiles;
        assert.ok(Number.isFinite(sum(700)));
        assert.equal(be.kernelCompiles, before, 'a 700-long sum compiled a new kernel after a 1500-long one');
      });
    }

    test('the kernel cache stays within its bound over many distinct kernels, destroying evicted ones', () => {
      const name = `gpu-${mode}-bounded`;
      const be = new GpuBackend({ mode, name, maxKernels: 6 });
      registerBackend(name, be);
      const rnd = lcg(3);
      // Each ignoreIndex is a distinct kernel source (and, on webasm, each size a distinct module).
      for (let i = 0; i < 40; i++) {
        const rows = 2 + (i % 5);
        const cols = 3 + (i % 3);
        tidy(() => {
          const logits = tensor(randArray(rows * cols, rnd), { shape: [rows, cols], backend: name });
          const targets = tensor(Int32Array.from({ length: rows }, (_, r) => r % cols), { dtype: 'int32', backend: name });
          const onCpu = crossEntropy(logits.to('cpu'), targets.to('cpu'), { ignoreIndex: -1 - i }).item();
          const onGpu = crossEntropy(logits, targets, { ignoreIndex: -1 - i }).item();
          assert.ok(Math.abs(onGpu - onCpu) <= 1e-5 * Math.max(1, Math.abs(onCpu)), `${onGpu} vs ${onCpu}`);
        });
        assert.ok(be.compiledKernels <= 6 + 1, `${be.compiledKernels} kernels held (bound 6)`);
      }
      assert.ok(be.kernelEvictions > 0, 'no kernel was evicted');
      assert.equal(be.liveBuffers, 0, 'device buffers leaked');
      console.log(`${mode}: ${be.kernelCompiles} kernels compiled, ${be.kernelEvictions} evicted, ${be.compiledKernels} held`);
    });
  });
}
