import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend, memory, type AdamHyper, type Backend } from '@lowrank/core';
import { lcg, mismatch, randArray } from './harness.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

/** Five chained AdamW / Adam updates (each step reads the state the last one wrote); returns p, m, v. */
function chain(be: Backend, decoupled: boolean, n: number): Float32Array[] {
  const rnd = lcg(21);
  let p = be.upload(randArray(n, rnd), 'float32');
  let m = be.fill({ inputs: {}, attrs: { size: n, value: 0, dtype: 'float32' } });
  let v = be.fill({ inputs: {}, attrs: { size: n, value: 0, dtype: 'float32' } });
  for (let step = 1; step <= 5; step++) {
    const g = be.upload(randArray(n, rnd), 'float32');
    const h: AdamHyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step, decoupled };
    const r = be.adamUpdate({ inputs: { p, g, m, v }, attrs: { size: n, hyper: h } });
    for (const old of [p, g, m, v]) be.free(old);
    ({ p, m, v } = r);
  }
  const out = [p, m, v].map((d) => be.download(d, 'float32', n) as Float32Array);
  for (const d of [p, m, v]) be.free(d);
  return out;
}

for (const mode of modesUnderTest) {
  describe(`gpu adamUpdate (${mode})`, () => {
    test('five chained updates match cpu in p, m and v', () => {
      const be = backendFor(mode);
      const cpu = new CpuBackend('cpu-adam');
      for (const decoupled of [true, false]) {
        const before = memory(be.name).dispatches;
        const got = chain(be, decoupled, 37);
        const dispatches = memory(be.name).dispatches - before;
        const want = chain(cpu, decoupled, 37);
        ['p', 'm', 'v'].forEach((name, i) => assert.equal(mismatch(got[i], want[i], 1e-4, 1e-6), null, `${name} (decoupled ${decoupled})`));
        // 5 updates, plus 2 fills and 6 uploads (GL uploads run a copy kernel).
        if (mode === 'headlessgl') assert.equal(dispatches, 5 + 2 + 6, 'an update took more than one dispatch');
      }
      assert.equal(be.liveBuffers, 0, 'device buffers leaked');
    });
  });
}
