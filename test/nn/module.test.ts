import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { memory, randn, tensor, tidy, type Tensor } from '@lowrank/core';
import {
  Embedding, LayerNorm, Linear, Module, ModuleList, TransformerLM, gptTiny, llamaTiny, type StateValue,
} from '@lowrank/nn';

class Tied extends Module {
  emb: Embedding;
  head: Linear;
  constructor() {
    super();
    this.emb = this.register('emb', new Embedding(5, 3));
    this.head = this.register('head', new Linear(3, 5, { bias: false }));
    this.head.registerParameter('weight', this.emb.weight);
  }
  forward(ids: Tensor): Tensor {
    return this.head.forward(this.emb.forward(ids));
  }
}

class Wrapper extends Module {
  inner: Linear;
  constructor(readonly base: Linear) {
    super();
    this.inner = this.register('base_layer', base);
  }
  forward(x: Tensor): Tensor {
    return this.inner.forward(x).mul(2);
  }
}

function snapshot(m: Module): Map<string, number[]> {
  return new Map(Object.entries(m.stateDict()).map(([k, t]) => [k, Array.from(t.dataSync())]));
}

/** A user wrapper around any Module: its arguments pass through with no cast (checked by the typecheck). */
class PassThrough<M extends Module> extends Module {
  constructor(readonly inner: M) {
    super();
    this.register('inner', inner);
  }
  forward(...args: Parameters<M['forward']>): ReturnType<M['forward']> {
    return this.inner.forward(...args) as ReturnType<M['forward']>;
  }
}

describe('Module', () => {
  test('a wrapper forwards any module without a cast', () => {
    const lin = new Linear(3, 2);
    const x = tensor([[0.5, -1, 2]]);
    const wrapped: Tensor = new PassThrough(lin).forward(x);
    assert.deepEqual(wrapped.toArray(), lin.forward(x).toArray());
  });

  test('parameters are named by dotted key, trainable, and survive tidy', () => {
    const model = new TransformerLM(gptTiny());
    for (const [k, p] of model.namedParameters()) {
      assert.equal(p.name, k);
      assert.equal(p.requiresGrad, true);
    }
    tidy(() => model.forward(tensor([[1, 2]], { dtype: 'int32' })));
    for (const p of model.parameters()) assert.equal(p.isDisposed, false);
  });

  test('tied weights: once in namedParameters, under both keys in stateDict', () => {
    const m = new Tied();
    assert.deepEqual(m.namedParameters().map(([k]) => k), ['emb.weight']);
    assert.deepEqual(Object.keys(m.stateDict()), ['emb.weight', 'head.weight']);
    assert.equal(m.head.weight, m.emb.weight);
    assert.equal(m.numParameters(), 15);
  });

  test('namedModules lists dotted paths depth first', () => {
    const model = new TransformerLM(llamaTiny());
    const names = model.namedModules().map(([k]) => k);
    assert.equal(names[0], '');
    assert.ok(names.includes('layers.1.self_attn.q_proj'));
    assert.ok(names.indexOf('layers.0.self_attn') < names.indexOf('layers.0.self_attn.q_proj'));
  });

  test('setSubmodule swaps the child and keeps the camelCase field in sync', () => {
    const model = new TransformerLM(gptTiny());
    const attn = model.layers.at(0).selfAttn;
    const old = attn.qProj;
    const wrapper = new Wrapper(old);
    model.setSubmodule('layers.0.self_attn.q_proj', wrapper);
    assert.equal(model.getSubmodule('layers.0.self_attn.q_proj'), wrapper);
    assert.equal(attn.qProj as unknown, wrapper);
    assert.ok(Object.keys(model.stateDict()).includes('layers.0.self_attn.q_proj.base_layer.weight'));
    const ids = tensor([[1, 2, 3]], { dtype: 'int32' });
    assert.deepEqual(model.forward(ids).logits.shape, [1, 3, 23]);
    assert.throws(() => model.setSubmodule('layers.0.self_attn.nope', wrapper), /no submodule 'nope'/);
  });

  test('ModuleList registers 0..n-1 and reflects swaps', () => {
    const list = new ModuleList([new Linear(2, 2), new Linear(2, 2)]);
    assert.equal(list.length, 2);
    const l = new LayerNorm(2);
    list.setSubmodule('1', l);
    assert.equal(list.at(1), l);
    assert.deepEqual([...list].length, 2);
  });

  test('train/eval flip every module; apply visits children first', () => {
    const model = new TransformerLM(gptTiny());
    model.eval();
    assert.ok(model.namedModules().every(([, m]) => !m.training));
    model.train();
    assert.ok(model.namedModules().every(([, m]) => m.training));
    const seen: string[] = [];
    model.apply((m) => seen.push(m.constructor.name));
    assert.equal(seen[seen.length - 1], 'TransformerLM');
  });

  test('zeroGrad drops gradients', () => {
    const model = new TransformerLM(gptTiny());
    const ids = tensor([[1, 2, 3]], { dtype: 'int32' });
    model.forward(ids, { targets: ids }).loss!.backward();
    assert.ok(model.parameters().every((p) => p.grad !== null));
    model.zeroGrad();
    assert.ok(model.parameters().every((p) => p.grad === null));
  });

  test('to() moves parameters in place, keeping identities and ties', () => {
    const m = new Tied();
    const before = m.parameters();
    m.to('meta');
    assert.deepEqual(m.parameters(), before);
    assert.equal(m.emb.weight.backend.name, 'meta');
    assert.equal(m.head.weight, m.emb.weight);
    assert.throws(() => m.to('cpu'), /hold no values/);
    assert.equal(m.emb.weight.backend.name, 'meta');
  });

  test('loadStateDict copies values (accepts tensors and {shape, data}) and round-trips', () => {
    const a = new TransformerLM(gptTiny());
    const b = new TransformerLM(gptTiny());
    b.loadStateDict(a.stateDict());
    assert.deepEqual(snapshot(b), snapshot(a));
    const raw: Record<string, StateValue> = {};
    for (const [k, t] of Object.entries(a.stateDict())) raw[k] = { shape: [...t.shape], data: Array.from(t.dataSync()) };
    const c = new TransformerLM(gptTiny());
    c.loadStateDict(raw);
    assert.deepEqual(snapshot(c), snapshot(a));
    // a copy, not shared storage
    assert.notEqual(c.stateDict()['norm.weight'].storage, a.stateDict()['norm.weight'].storage);
  });

  test('strict load lists every missing, unexpected and mis-shaped key in one error', () => {
    const model = new TransformerLM(gptTiny());
    const sd: Record<string, StateValue> = { ...model.stateDict() };
    delete sd['norm.bias'];
    delete sd['lm_head.weight'];
    sd['extra.weight'] = randn([2]);
    sd['layers.0.mlp.up_proj.weight'] = randn([3, 3]);
    sd['norm.weight'] = { shape: [16], data: [1, 2] };
    assert.throws(() => model.loadStateDict(sd), (err: Error) => {
      for (const k of ['norm.bias', 'lm_head.weight', 'extra.weight', 'layers.0.mlp.up_proj.weight', 'norm.weight']) {
        assert.ok(err.message.includes(k), `message names ${k}:\n${err.message}`);
      }
      assert.match(err.message, /Missing key/);
      assert.match(err.message, /Unexpected key/);
      assert.match(err.message, /\[3, 3\] in checkpoint, \[64, 16\] in model/);
      return true;
    });
    const { missingKeys, unexpectedKeys } = new TransformerLM(gptTiny()).loadStateDict(
      Object.fromEntries(Object.entries(sd).filter(([k]) => k === 'norm.weight' ? false : !k.startsWith('layers.0.mlp.up'))),
      { strict: false },
    );
    assert.ok(missingKeys.includes('norm.bias') && unexpectedKeys.includes('extra.weight'));
  });

  test('property: a corrupted state dict is rejected naming every bad key, and the model is unchanged', () => {
    const model = new TransformerLM(llamaTiny());
    const good = model.stateDict();
    const keys = Object.keys(good);
    const before = snapshot(model);
    const source = new TransformerLM(llamaTiny()); // different values, so a partial write would show
    const corruption = fc.record({
      drop: fc.subarray(keys),
      reshape: fc.subarray(keys),
      extra: fc.uniqueArray(fc.stringMatching(/^[a-z]{1,6}\.[a-z]{1,6}$/), { maxLength: 3 }),
    }).filter((c) => c.drop.length + c.reshape.length + c.extra.length > 0);
    fc.assert(fc.property(corruption, ({ drop, reshape, extra }) => {
      const sd: Record<string, StateValue> = { ...source.stateDict() };
      for (const k of reshape) sd[k] = { shape: [...good[k].shape, 2], data: new Array(good[k].size * 2).fill(1) };
      for (const k of drop) delete sd[k];
      for (const k of extra) sd[k] = { shape: [1], data: [0] };
      let message = '';
      assert.throws(() => model.loadStateDict(sd), (e: Error) => ((message = e.message), true));
      for (const k of [...drop, ...reshape, ...extra]) assert.ok(message.includes(`${k}`), `missing ${k} in\n${message}`);
      assert.deepEqual(snapshot(model), before);
    }), { numRuns: 40 });
  });

  test('building and disposing leaves no per-forward leak under tidy', () => {
    const model = new TransformerLM(gptTiny());
    const ids = tensor([[1, 2, 3, 4]], { dtype: 'int32' });
    tidy(() => model.forward(ids, { targets: ids }).loss!.item());
    const live = memory().liveTensors;
    for (let i = 0; i < 5; i++) tidy(() => model.forward(ids, { targets: ids }).loss!.item());
    assert.equal(memory().liveTensors, live);
  });
});
