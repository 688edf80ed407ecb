// Adapters without a file system (what a browser page does): to bytes, to Blobs, and back.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { getFileHost, setFileHost, type FileHost } from '@lowrank/core';
import { nodeFileHost } from '@lowrank/core/node';
import {
  ADAPTER_FILE, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, PeftModel, adapterToFiles, getPeftModel, loadAdapterInto,
} from '@lowrank/lora';
import { build, kindsOf, output, sameValues, specArb, targetsArb, type Spec } from './helpers.ts';

const mlp = (seed: number): Spec => ({ kind: 'mlp', dims: [6, 5, 4], rows: 3, seed });

const caseArb = specArb
  .filter((s) => s.kind === 'mlp' || s.nLayer <= 2)
  .chain((spec) => fc.record({ spec: fc.constant(spec), targets: targetsArb(kindsOf(spec)), r: fc.integer({ min: 1, max: 3 }) }));

/** Runs fn with no file host installed, as in a browser, then restores Node's. */
async function withoutFileHost(fn: () => Promise<void>): Promise<void> {
  setFileHost(null);
  try {
    await fn();
  } finally {
    setFileHost(nodeFileHost);
  }
}

describe('adapters in memory', () => {
  test('toFiles -> loadAdapterInto (bytes or Blobs) reproduces the outputs, with no file host', async () => {
    await withoutFileHost(async () => {
      await fc.assert(fc.asyncProperty(caseArb, fc.constantFrom('native', 'peft'), fc.boolean(), async (c, format, asBlob) => {
        const b = build(c.spec);
        const peft = getPeftModel(b.model, { r: c.r, loraAlpha: 4, targetModules: c.targets, initLoraWeights: false });
        const files = peft.toFiles(format);
        assert.deepEqual(Object.keys(files).sort(), format === 'native' ? [ADAPTER_FILE] : [PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE]);
        const src = asBlob ? Object.fromEntries(Object.entries(files).map(([k, v]) => [k, new Blob([v])])) : files;
        const loaded = await loadAdapterInto(build(c.spec).model, src, format);
        assert.ok(sameValues(output(b, loaded), output(b, peft)), `${format}: outputs differ`);
      }), { numRuns: 8 });
    });
  });

  test('the PEFT files equal what savePretrained writes (same bytes)', async () => {
    const b = build(mlp(3));
    const peft = getPeftModel(b.model, { r: 2, targetModules: 'all-linear', initLoraWeights: false });
    const files = adapterToFiles(peft, 'peft');
    const written = new Map<string, Uint8Array>();
    const memHost: FileHost = {
      readFile: async (p) => written.get(p) ?? Promise.reject(new Error(`no ${p}`)),
      writeFile: async (p, bytes) => void written.set(p, bytes),
      mkdir: async () => undefined,
      join: (...parts) => parts.join('/'),
    };
    setFileHost(memHost);
    try {
      await peft.savePretrained('mem');
      for (const [name, bytes] of Object.entries(files)) assert.deepEqual(written.get(`mem/${name}`), bytes, name);
      const again = await PeftModel.fromPretrained(build(mlp(3)).model, 'mem');
      assert.ok(sameValues(output(b, again), output(b, peft)));
    } finally {
      setFileHost(nodeFileHost);
    }
  });

  test('a path with no file host, a missing file, broken JSON: clear errors, model unchanged', async () => {
    await withoutFileHost(async () => {
      const b = build(mlp(5));
      const peft = getPeftModel(b.model, { r: 2, targetModules: 'all-linear' });
      assert.throws(() => getFileHost('saveCheckpoint'), /saveCheckpoint: .*import '@lowrank\/core\/node'/);
      await assert.rejects(peft.savePretrained('out'), /savePretrained: .*needs a file system/);
      const model = build(mlp(5)).model;
      const keys = Object.keys(model.stateDict());
      await assert.rejects(loadAdapterInto(model, { [PEFT_CONFIG_FILE]: new Uint8Array() }, 'peft'), /adapter_config.json: not valid JSON/);
      await assert.rejects(
        loadAdapterInto(model, { [PEFT_CONFIG_FILE]: peft.toFiles('peft')[PEFT_CONFIG_FILE] }, 'peft'),
        /no file 'adapter_model.safetensors' among the given files \(adapter_config.json\)/,
      );
      assert.deepEqual(Object.keys(model.stateDict()), keys);
    });
  });
});
