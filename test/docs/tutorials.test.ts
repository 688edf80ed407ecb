// Runs every tutorial in docs/ in quick mode and checks the claims its page makes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as t1 from '../../docs/01-tensors-and-autograd.ts';
import * as t2 from '../../docs/02-building-a-transformer.ts';
import * as t4 from '../../docs/04-backends.ts';

/** Quick mode, output collected (printed only when a test fails). */
async function quick<C>(main: (o: { quick: boolean; log: (line: string) => void }) => Promise<C>): Promise<{ claims: C; out: string }> {
  const lines: string[] = [];
  const claims = await main({ quick: true, log: (line) => lines.push(line) });
  return { claims, out: lines.join('\n') };
}

describe('tutorial 1: tensors and autograd', () => {
  test('broadcast, matmul, backward, accumulation, noGrad, gradcheck', async () => {
    const { claims: c, out } = await quick(t1.main);
    assert.deepEqual(c.broadcastShape, [2, 3], out);
    assert.deepEqual(c.broadcastValues, [[11, 22, 33], [14, 25, 36]]);
    assert.deepEqual(c.matmulShape, [2, 4]);
    assert.equal(c.gradError, 0, 'dL/dx of sum(x^2) is exactly 2x');
    assert.deepEqual(c.accumulated, [5, -1, 9], 'a second backward adds 3');
    assert.equal(c.noGradRequiresGrad, false);
    assert.equal(c.noGradHasGraph, false);
    assert.equal(c.detachedRequiresGrad, false);
    assert.equal(c.gradcheckOk, true);
    assert.ok(c.gradcheckMaxAbsError < 1e-6, `gradcheck error ${c.gradcheckMaxAbsError}`);
    assert.equal(c.gradcheckCatchesBug, true, 'gradcheck flags a wrong backward');
  });
});

describe('tutorial 2: building a transformer', () => {
  test('Module, both flavours, training lowers the loss, generation', async () => {
    const { claims: c, out } = await quick(t2.main);
    assert.deepEqual(c.mlpParameterNames, ['fc1.weight', 'fc1.bias', 'norm.weight', 'norm.bias', 'fc2.weight', 'fc2.bias'], out);
    assert.deepEqual(c.mlpOutputShape, [4, 10, 8]);
    assert.ok(c.gptKeys.includes('embed_positions.weight') && c.gptKeys.includes('layers.0.mlp.up_proj.bias'));
    assert.ok(c.llamaKeys.includes('layers.0.mlp.gate_proj.weight'));
    assert.ok(!c.llamaKeys.some((k) => k.endsWith('.bias') || k.startsWith('embed_positions')), 'llama: no biases, RoPE');
    assert.deepEqual(c.logitsShape, [2, 4, 80]);
    assert.ok(c.valLossAfter < c.valLossBefore - 0.5, `val loss ${c.valLossBefore} -> ${c.valLossAfter}\n${out}`);
    assert.ok(c.greedy.startsWith('The ') && c.greedy.length === 64);
    assert.equal(c.cacheAgrees, true, 'KV-cached greedy decoding equals the uncached one');
    assert.equal(c.samplingReproduces, true, 'same seed, same sample');
    assert.equal(c.gpt2SmallParameters, 124_439_808);
    assert.equal(c.llama7bParameters, 6_738_415_616);
  });
});

describe('tutorial 4: backends', () => {
  test('gpu mode reported, cpu parity, lazy readback, flat memory, tidy', async () => {
    const { claims: c, out } = await quick(t4.main);
    assert.ok(['headlessgl', 'webgl2', 'webgl', 'webasm', 'cpu'].includes(c.gpuMode), `mode ${c.gpuMode}`);
    assert.equal(c.probe[c.gpuMode], true, `the mode that ran (${c.gpuMode}) is one probeGpuModes reports`);
    if (!process.env.LOWRANK_GPU_MODE && c.probe.headlessgl) assert.equal(c.gpuMode, 'headlessgl', 'auto prefers headless-gl');
    for (const name of ['cpu', 'meta', 'gpu']) assert.ok(c.backends.includes(name), name);
    assert.ok(c.opMaxDiff < 1e-4, `op max diff ${c.opMaxDiff}\n${out}`);
    assert.equal(c.readbacksWhileComputing, 0);
    assert.equal(c.readbacksToRead, 1);
    assert.ok(c.modelMaxDiff < 1e-4, `model max diff ${c.modelMaxDiff}`);
    assert.ok(c.gpuLosses.every(Number.isFinite));
    assert.ok(c.gpuLosses[c.gpuLosses.length - 1] < c.gpuLosses[0], `gpu losses ${c.gpuLosses}`);
    assert.ok(c.liveTensorsPerStep.every((n) => n === c.liveTensorsPerStep[0]), `live tensors ${c.liveTensorsPerStep}`);
    assert.equal(c.tidyLeftBehind, 2);
    assert.ok(c.peakBytes >= 3 * 256 * 256 * 4, `peak ${c.peakBytes}`);
    assert.equal(c.liveTensorsAtEnd, 0, 'nothing left on the gpu');
  });
});
