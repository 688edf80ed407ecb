// Runs tutorial 7 (a Hugging Face model directory -> PEFT adapter -> merged checkpoint) in quick mode.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as t7 from '../../docs/07-finetune-a-hugging-face-model.ts';

describe('tutorial 7: fine-tune a Hugging Face model', () => {
  test('load dir + tokenizer, LoRA on c_attn, train, save, reload bit-exact, merge, reload merged', async () => {
    const lines: string[] = [];
    const c = await t7.main({ quick: true, log: (l) => lines.push(l) });
    const out = lines.join('\n');
    assert.ok(c.modelFiles.includes('config.json') && c.modelFiles.includes('model.safetensors') && c.modelFiles.includes('tokenizer.json'), out);
    assert.match(c.architecture, /^GPT2LMHeadModel: \d+ layers/);
    assert.equal(c.roundTrip, 'The jury said.');
    assert.match(c.trainableLine, /^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}$/);
    assert.ok(c.evalAfter < c.evalBefore, `eval loss ${c.evalBefore} -> ${c.evalAfter}\n${out}`);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) assert.ok(c.adapterFiles.includes(f), c.adapterFiles.join(', '));
    assert.equal(c.reloadMaxDiff, 0, 'a reloaded adapter reproduces the logits bit-exactly');
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) assert.ok(c.mergedFiles.includes(f), c.mergedFiles.join(', '));
    assert.ok(c.mergedMaxDiff < 1e-4, `merged vs adapter logits ${c.mergedMaxDiff}`);
    assert.ok(c.sample.startsWith('He said'));
  });
});
