// Issue 15 defects 4 (pattern cost), 6 (prototype names), 7 (unclear errors), and issue 10's option checks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TransformerLM, llamaTiny } from '@lowrank/nn';
import { LoraConfig, getPeftModel, loraConfigFromPeftJson, matchesTarget, type LoraConfigInput } from '@lowrank/lora';

const asInput = (o: object): LoraConfigInput => o as LoraConfigInput;

describe('LoraConfig options', () => {
  test("PEFT's snake_case option names are errors suggesting the camelCase field", () => {
    assert.throws(() => new LoraConfig(asInput({ lora_alpha: 16 })), /LoraConfig: unknown option 'lora_alpha' \(did you mean 'loraAlpha'\?\)/);
    assert.throws(() => new LoraConfig(asInput({ r: 4, target_modules: ['q_proj'] })), /'target_modules' \(did you mean 'targetModules'\?\)/);
    assert.throws(() => new LoraConfig(asInput({ ralpha: 1 })), /unknown option 'ralpha'; options are r, loraAlpha/);
  });
  test('taskType outside PEFT list is an error listing them', () => {
    assert.throws(() => new LoraConfig({ taskType: 'CAUSAL' }),
      /taskType must be one of PEFT's task types CAUSAL_LM, SEQ_CLS, SEQ_2_SEQ_LM, TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION, got 'CAUSAL'/);
    assert.equal(new LoraConfig({ taskType: 'SEQ_CLS' }).taskType, 'SEQ_CLS');
  });
  test('NaN is reported as NaN (not "null")', () => {
    assert.throws(() => new LoraConfig({ loraAlpha: NaN }), /loraAlpha must be a finite number, got NaN$/);
    assert.throws(() => new LoraConfig({ r: Infinity }), /r must be a positive integer, got Infinity$/);
  });
  test('other fields are type-checked too', () => {
    assert.throws(() => new LoraConfig(asInput({ inferenceMode: 'yes' })), /inferenceMode must be a boolean, got 'yes'/);
    assert.throws(() => new LoraConfig(asInput({ baseModelNameOrPath: 3 })), /baseModelNameOrPath must be a string or null, got 3/);
    assert.throws(() => new LoraConfig(asInput({ rankPattern: [1] })), /rankPattern must be an object of pattern -> number/);
  });
});

describe('adapter_config.json parsing', () => {
  const base = { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'], peft_type: 'LORA', task_type: 'CAUSAL_LM' };
  test("snake_case keys keep working, and errors name the file and the JSON key", () => {
    const cfg = loraConfigFromPeftJson(base, { onWarning: () => undefined });
    assert.equal(cfg.loraAlpha, 8);
    assert.throws(() => loraConfigFromPeftJson({ ...base, lora_alpha: 'x' }, { source: 'run/adapter_config.json' }),
      /^Error: run\/adapter_config.json: lora_alpha must be a finite number, got 'x'$/);
    assert.throws(() => loraConfigFromPeftJson({ ...base, rank_pattern: { q_proj: 0 } }, { source: 'a.json' }),
      /a.json: rank_pattern\['q_proj'\] must be a positive integer, got 0/);
    assert.throws(() => loraConfigFromPeftJson({ ...base, task_type: 'LM' }), /adapter_config.json: task_type must be one of/);
  });
  test('prototype names are plain unknown keys: warned once, by name, never a TypeError', () => {
    const json = JSON.parse('{"r": 4, "__proto__": {"x": 1}, "__defineGetter__": 1, "toString": 2, "constructor": 3, "hasOwnProperty": 4}') as object;
    const warnings: string[] = [];
    const cfg = loraConfigFromPeftJson(json, { onWarning: (m) => warnings.push(m) });
    assert.equal(cfg.r, 4);
    assert.equal(warnings.length, 1);
    for (const k of ['__proto__', '__defineGetter__', 'toString', 'constructor', 'hasOwnProperty']) assert.match(warnings[0], new RegExp(`'${k}'`));
  });
  test('prototype names as pattern keys are ordinary keys of a null-prototype map', () => {
    const json = JSON.parse('{"r": 4, "rank_pattern": {"__proto__": 2, "toString": 3}, "alpha_pattern": {"constructor": 5}}') as object;
    const cfg = loraConfigFromPeftJson(json);
    assert.deepEqual(Object.keys(cfg.rankPattern), ['__proto__', 'toString']);
    assert.equal(Object.getPrototypeOf(cfg.rankPattern), null);
    assert.equal(cfg.layerSettings('layers.0.self_attn.toString').r, 3);
    assert.equal(cfg.layerSettings('layers.0.self_attn.q_proj').r, 4);
    assert.equal(cfg.layerSettings('constructor').alpha, 5);
  });
});

describe('patterns from configs cost time linear in the name (no catastrophic backtracking)', () => {
  const hostile = ['(.*)*x', '(a+)+b', '(x+x+)+y', '(.*a){12}', '((a|a)*)*b', '(.*\\.)*(.*)*z'];
  test('hostile target_modules / rank_pattern patterns resolve in milliseconds', () => {
    const model = new TransformerLM(llamaTiny());
    const long = `${'a'.repeat(3000)}.${'x'.repeat(3000)}!`;
    for (const p of hostile) {
      const t0 = performance.now();
      assert.equal(matchesTarget(long, p), false);
      const cfg = loraConfigFromPeftJson({ r: 2, target_modules: ['q_proj'], rank_pattern: { [p]: 3 } });
      assert.equal(cfg.layerSettings(long).r, 2);
      assert.throws(() => getPeftModel(model, { targetModules: p }), /no module matched targetModules/);
      const ms = performance.now() - t0;
      // RegExp takes > 60 s on the first of these; the NFA walks 6,000 characters in a few ms per pattern.
      assert.ok(ms < 2000, `${p}: ${ms.toFixed(0)} ms`);
    }
  });
  test('Python re.fullmatch semantics for the usual PEFT patterns', () => {
    const rows: [string, string, boolean][] = [
      ['.*\\.(q|v)_proj', 'layers.0.self_attn.q_proj', true],
      ['.*\\.(q|v)_proj', 'layers.0.self_attn.k_proj', false],
      ['layers\\.\\d+\\.self_attn\\.(q_proj|v_proj)', 'layers.12.self_attn.v_proj', true],
      ['model\\.layers\\.[0-1]\\..*', 'model.layers.2.mlp.up_proj', false],
      ['(?P<k>q|v)_proj', 'q_proj', true],
      ['.*(?:mlp).*', 'layers.0.mlp.up_proj', true],
      ['q_pro', 'q_proj', false],
      ['[^.]+_proj', 'layers.0.q_proj', false],
    ];
    for (const [p, name, want] of rows) assert.equal(matchesTarget(name, p), want, `${p} on ${name}`);
  });
  test('unsupported or oversized patterns are clear errors naming the field', () => {
    assert.throws(() => new LoraConfig({ targetModules: '(?=q)q_proj' }), /targetModules "\(\?=q\)q_proj" is not a supported pattern: '\(\?=q' \(lookaround/);
    assert.throws(() => new LoraConfig({ targetModules: '(a{1000}){1000}' }), /too complex/);
    assert.throws(() => loraConfigFromPeftJson({ target_modules: 'x'.repeat(5000) }, { source: 'f.json' }),
      /f.json: target_modules "x+\.\.\." is not a supported pattern: longer than 1000 characters/);
  });
});
