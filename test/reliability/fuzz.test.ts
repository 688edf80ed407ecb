// Issue 15: every loader, fed seeded mutations of a valid file, fails with a clear Error,
// in bounded time and memory, leaving the model as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeSafetensors, manualSeed, memory } from '@lowrank/core';
import { TransformerLM, gptTiny, parseCheckpoint, restoreCheckpoint, serializeCheckpoint } from '@lowrank/nn';
import { adapterToFiles, getPeftModel, loadAdapterInto } from '@lowrank/lora';
import { lcg } from '../gpu/harness.ts';

const N = 1500;
const mk = (seed = 1): TransformerLM => (manualSeed(seed), new TransformerLM(gptTiny()));
const fingerprint = (m: TransformerLM): string => {
  let s = 0;
  for (const p of m.parameters()) for (const v of p.dataSync()) s += v;
  return `${m.namedModules().length}:${s}:${memory().liveTensors}`;
};

function mutate(src: Uint8Array, rnd: () => number): Uint8Array {
  const b = new Uint8Array(src);
  const kind = Math.floor(rnd() * 5);
  const at = Math.floor(rnd() * b.length);
  if (kind === 0) return b.slice(0, at); // truncate
  if (kind === 1) for (let i = 0; i < 1 + rnd() * 8; i++) b[Math.floor(rnd() * b.length)] ^= 1 << Math.floor(rnd() * 8);
  if (kind === 2) b[at] = [0x00, 0xff, 0x7f, 0x80, 0x22, 0x5b, 0x7b, 0x39][Math.floor(rnd() * 8)];
  if (kind === 3) { // overwrite 4 bytes with a large integer (lengths, counts)
    new DataView(b.buffer).setUint32(Math.min(at, b.length - 4), Math.floor(rnd() * 2 ** 32), rnd() < 0.5);
  }
  if (kind === 4) return new Uint8Array([...b.slice(0, at), ...b.slice(at, at + Math.floor(rnd() * 64)), ...b.slice(at)]); // duplicate a chunk
  return b;
}

interface Row { tried: number; ok: number; clear: number; crashes: number; hangs: number; overAlloc: number; stateChanged: number }
const table: Record<string, Row> = {};

async function fuzz(name: string, file: Uint8Array, load: (bytes: Uint8Array) => Promise<void> | void, state?: () => string): Promise<Row> {
  const rnd = lcg(name.length * 104729 + 7);
  const row: Row = { tried: 0, ok: 0, clear: 0, crashes: 0, hangs: 0, overAlloc: 0, stateChanged: 0 };
  const crashes: string[] = [];
  for (let i = 0; i < N; i++) {
    const bytes = mutate(file, rnd);
    const before = state?.();
    const rss0 = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    row.tried++;
    let failed = false;
    try {
      await load(bytes);
      row.ok++;
    } catch (err) {
      failed = true;
      if (err instanceof Error && !(err instanceof TypeError) && !(err instanceof RangeError) && err.message.length > 10) row.clear++;
      else {
        row.crashes++;
        if (crashes.length < 3) crashes.push(String(err));
      }
    }
    if (performance.now() - t0 > 1000) row.hangs++;
    // Extra memory beyond a small multiple of the file (tensors are copied once, the model is fixed).
    if (process.memoryUsage().arrayBuffers - rss0 > 8 * file.length + (64 << 20)) row.overAlloc++;
    if (failed && state && state() !== before) row.stateChanged++;
  }
  table[name] = row;
  console.log(`fuzz ${name}: ${JSON.stringify(row)}${crashes.length ? ` e.g. ${crashes.join(' | ')}` : ''}`);
  return row;
}

const peft = getPeftModel(mk(2), { r: 4, targetModules: ['q_proj', 'v_proj'], initLoraWeights: false });
const peftFiles = adapterToFiles(peft, 'peft');
const nativeFile = adapterToFiles(peft, 'native')['adapter.lowrank'];
const quiet = { onWarning: () => undefined };

test(`fuzz: ${N} mutations per loader, every failure a clear Error, bounded, state unchanged`, async () => {
  const target = getPeftModel(mk(3), { r: 2, targetModules: ['q_proj'] });
  const fp = () => fingerprint(target.getBaseModel());
  const rows = [
    await fuzz('safetensors', peftFiles['adapter_model.safetensors'], (b) => void decodeSafetensors(b)),
    await fuzz('native adapter', nativeFile, async (b) => {
      await loadAdapterInto(target, { 'adapter.lowrank': b }, 'native', { ...quiet, adapterName: 'x' });
      target.deleteAdapter('x');
    }, fp),
    await fuzz('PEFT adapter (config)', peftFiles['adapter_config.json'], async (b) => {
      await loadAdapterInto(target, { ...peftFiles, 'adapter_config.json': b }, 'peft', { ...quiet, adapterName: 'x' });
      target.deleteAdapter('x');
    }, fp),
    await fuzz('PEFT adapter (weights)', peftFiles['adapter_model.safetensors'], async (b) => {
      await loadAdapterInto(target, { ...peftFiles, 'adapter_model.safetensors': b }, 'peft', { ...quiet, adapterName: 'x' });
      target.deleteAdapter('x');
    }, fp),
  ];
  const model = mk(4);
  const ck = serializeCheckpoint({ model: mk(5), step: 7 });
  rows.push(await fuzz('checkpoint', ck, (b) => void restoreCheckpoint(parseCheckpoint(b), { model }), () => fingerprint(model)));
  for (const r of rows) {
    assert.equal(r.crashes, 0);
    assert.equal(r.hangs, 0);
    assert.equal(r.overAlloc, 0);
    assert.equal(r.stateChanged, 0);
  }
});
