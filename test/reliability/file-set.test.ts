// A save killed between its renames leaves a manifest, some new final files and the rest staged
// under temp names. Every way of loading that directory must see the new save whole: the lora
// file host, and also nn's directory source (which a plain path goes to once @lowrank/nn/node is
// imported: the CI failure where a new config loaded beside old weights).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MANIFEST_FILE } from '@lowrank/core/node';
import { manualSeed } from '@lowrank/core';
import { TransformerLM, gptTiny, openSource } from '@lowrank/nn';
import '@lowrank/nn/node';
import { getPeftModel, type PeftModel } from '@lowrank/lora';
import { loadPeftAdapter, savePretrained } from '@lowrank/lora/node';

const root = mkdtempSync(path.join(tmpdir(), 'lowrank-file-set-'));
after(() => rmSync(root, { recursive: true, force: true }));

function adapter(seed: number, alpha: number): PeftModel {
  manualSeed(seed);
  return getPeftModel(new TransformerLM(gptTiny()), { r: 4, loraAlpha: alpha, targetModules: ['q_proj', 'v_proj'], initLoraWeights: false });
}

const loraValues = (p: PeftModel): number[] => p.baseModel.loraLayers().flatMap(([, l]) => [...l.loraB.get('default').weight.dataSync()]);

/** dir holds save `old`; then the parts of save `next` that a kill after its first rename leaves. */
function killedBetweenRenames(dir: string, nextDir: string, renamed: string): void {
  const manifest = JSON.parse(readFileSync(path.join(nextDir, MANIFEST_FILE), 'utf8')) as { files: Record<string, { staged: string }> };
  copyFileSync(path.join(nextDir, MANIFEST_FILE), path.join(dir, MANIFEST_FILE));
  for (const [name, e] of Object.entries(manifest.files)) {
    copyFileSync(path.join(nextDir, name), path.join(dir, name === renamed ? name : e.staged));
  }
}

describe('a PEFT directory killed between renames loads as the new save', () => {
  for (const renamed of ['adapter_config.json', 'adapter_model.safetensors']) {
    test(`only ${renamed} renamed`, async () => {
      const dir = path.join(root, `old-${renamed}`);
      const nextDir = path.join(root, `next-${renamed}`);
      const next = adapter(2, 16);
      await savePretrained(adapter(1, 8), dir);
      await savePretrained(next, nextDir);
      killedBetweenRenames(dir, nextDir, renamed);

      const loaded = await loadPeftAdapter(new TransformerLM(gptTiny()), dir);
      assert.equal(loaded.peftConfig.default.loraAlpha, 16, 'the new config');
      assert.deepEqual(loraValues(loaded), loraValues(next), 'the new weights beside it');

      const src = await openSource(dir);
      const weights = readFileSync(path.join(nextDir, 'adapter_model.safetensors'));
      assert.deepEqual(await src.read('adapter_model.safetensors'), new Uint8Array(weights));
      assert.equal(await src.size!('adapter_model.safetensors'), weights.length);
      assert.deepEqual(await src.readRange!('adapter_model.safetensors', 8, 40), new Uint8Array(weights.subarray(8, 40)));
    });
  }
});
