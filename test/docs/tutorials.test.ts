// Runs every tutorial in docs/ in quick mode and checks the claims its page makes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as t1 from '../../docs/01-tensors-and-autograd.ts';
import * as t2 from '../../docs/02-building-a-transformer.ts';
import * as t3 from '../../docs/03-lora-finetune.ts';
import * as t4 from '../../docs/04-backends.ts';
import * as t5 from '../../docs/05-counting-and-memory.ts';
import * as t6 from '../../docs/06-peft-interop.ts';

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

describe('tutorial 3: LoRA fine-tuning end to end', () => {
  test('pre-train, LoRA vs full fine-tune, save, reload bit-exact, merge, generate', async () => {
    const { claims: c, out } = await quick(t3.main);
    assert.ok(c.pretrainFiles > 400, `${c.pretrainFiles} pre-training files`);
    assert.deepEqual(c.humorFiles, ['cr01', 'cr02', 'cr03', 'cr04', 'cr05', 'cr06', 'cr07', 'cr08', 'cr09']);
    assert.ok(c.pretrainValLoss.after < c.pretrainValLoss.before - 1, `pre-training ${JSON.stringify(c.pretrainValLoss)}\n${out}`);
    assert.match(c.trainableLine, /^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}$/);
    assert.ok(c.lora.trainable < c.full.trainable / 2, 'LoRA trains a fraction of the weights');
    assert.ok(c.lora.valAfter < c.lora.valBefore, `LoRA lowers the held-out genre's loss: ${c.lora.valBefore} -> ${c.lora.valAfter}\n${out}`);
    assert.ok(c.full.valAfter < c.lora.valBefore, 'so does full fine-tuning');
    assert.ok(Math.abs(c.full.valAfter - c.lora.valAfter) < 0.25, `similar losses: LoRA ${c.lora.valAfter}, full ${c.full.valAfter}`);
    assert.ok(c.loraTrainingStateBytes * 2 < c.full.trainingStateBytes);
    assert.ok(c.adapterBytes * 2 < c.checkpointBytes, `adapter ${c.adapterBytes} B vs checkpoint ${c.checkpointBytes} B`);
    assert.equal(c.reloadMaxDiff, 0, 'a reloaded adapter reproduces the logits bit-exactly');
    assert.ok(c.mergeMaxDiff < 1e-4, `merged vs unmerged ${c.mergeMaxDiff}`);
    assert.ok(c.baseSample.startsWith('He said ') && c.tunedSample.startsWith('He said '));
    assert.notEqual(c.baseSample, c.tunedSample);
  });
});

describe('tutorial 5: counting and memory', () => {
  test("PEFT's gpt2 line, savings table, llama-7b full vs LoRA", async () => {
    const { claims: c, out } = await quick(t5.main);
    assert.equal(c.gpt2Line, 'trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364', out);
    assert.deepEqual(c.gpt2Savings, { fullParams: 24 * 768 * 768, loraParams: 294_912, rows: 24 });
    assert.equal(c.llama.full.trainable, 6_738_415_616);
    assert.equal(c.llama.lora.trainable, 32 * 2 * 8 * (4096 + 4096));
    assert.ok(c.llama.lora.totalBytes < c.llama.full.totalBytes / 2, `${c.llama.lora.totalBytes} vs ${c.llama.full.totalBytes}`);
    assert.ok(c.llama.full.activations > 0 && c.llama.lora.activations > 0);
    assert.ok(c.llama.lora.totalBytes - c.llama.lora.activations < 0.3 * (c.llama.full.totalBytes - c.llama.full.activations));
    const at = (targets: string, r: number): number => c.sweep.find((s) => s.targets === targets && s.r === r)!.params;
    assert.equal(at('q,v', 16), 2 * at('q,v', 8), 'cost is linear in r');
    assert.equal(at('q,k,v,o', 8), 2 * at('q,v', 8));
    assert.ok(at('all-linear', 8) > at('q,k,v,o', 8));
    assert.ok(c.stepBytes.checkpointed < 0.6 * c.stepBytes.plain, JSON.stringify(c.stepBytes));
  });
});

describe('tutorial 6: PEFT interop', () => {
  test('PEFT files, HF key layout, round trip, an adapter PEFT wrote', async () => {
    const { claims: c, out } = await quick(t6.main);
    assert.deepEqual(c.files, ['adapter_config.json', 'adapter_model.safetensors', 'lowrank-manifest.json'], out);
    assert.equal(c.config.peft_type, 'LORA');
    assert.equal(c.config.r, 4);
    assert.deepEqual(c.config.target_modules, ['q_proj', 'v_proj']);
    assert.ok(c.adapterKeys.includes('base_model.model.layers.0.self_attn.q_proj.lora_A.weight'));
    assert.ok(c.hfKeys.includes('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight'));
    assert.equal(c.adapterKeys.length, 8);
    assert.equal(c.roundTripMaxDiff, 0, 'PEFT-format round trip is exact');
    if (c.pytorch) {
      assert.ok(c.pytorch.maxDiff < 1e-4, `vs PyTorch ${c.pytorch.maxDiff}`);
      assert.ok(Math.abs(c.pytorch.loss - c.pytorch.expectedLoss) < 1e-4);
    }
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
    assert.ok(c.asyncMatchesSync, 'async readers give the sync values');
  });
});
