import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  decodeCheckpoint,
  decodeSafetensors,
  encodeCheckpoint,
  encodeSafetensors,
  type CheckpointValue,
  type RawTensor,
} from '../../packages/core/src/serialization/index.ts';
import { writeFileAtomic, writeFileAtomicSync } from '../../packages/core/src/node.ts';
import { fixturesDir as sharedFixtures } from '../fixtures-dir.ts';

const fixturesDir: string | undefined = sharedFixtures;
const peftDir = fixturesDir === undefined ? undefined : join(fixturesDir, 'peft/llama-tiny');

function bytesOf(t: RawTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function assertSameTensor(actual: RawTensor | undefined, expected: RawTensor, what: string): void {
  assert.ok(actual, `${what} missing`);
  assert.equal(actual.dtype, expected.dtype, `${what} dtype`);
  assert.deepEqual(actual.shape, expected.shape, `${what} shape`);
  assert.deepEqual(bytesOf(actual), bytesOf(expected), `${what} bytes`);
  assert.equal(actual.data.byteOffset % 4, 0, `${what} aligned`);
}

const SPECIAL_F32 = [-0, Infinity, -Infinity, NaN, 1.401298464324817e-45, -1.1754942106924411e-38, 3.4028234663852886e38];

const shapeArb = fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 4 });
const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Float32 tensors from arbitrary bit patterns (NaN payloads, subnormals, -0, infinities) or from special values. */
const f32TensorArb: fc.Arbitrary<RawTensor> = shapeArb.chain((shape) =>
  fc
    .oneof(
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: numel(shape), maxLength: numel(shape) }).map((bits) => {
        const data = new Float32Array(new Uint32Array(bits).buffer);
        return data;
      }),
      fc
        .array(fc.oneof(fc.float(), fc.constantFrom(...SPECIAL_F32)), { minLength: numel(shape), maxLength: numel(shape) })
        .map((xs) => new Float32Array(xs)),
    )
    .filter((data) => new Uint32Array(data.buffer).some((b) => b !== 0))
    .map((data): RawTensor => ({ dtype: 'float32', shape, data })),
);

const i32TensorArb: fc.Arbitrary<RawTensor> = shapeArb.chain((shape) =>
  fc
    .array(fc.integer({ min: -0x80000000, max: 0x7fffffff }), { minLength: numel(shape), maxLength: numel(shape) })
    .filter((xs) => xs.some((x) => x !== 0))
    .map((xs): RawTensor => ({ dtype: 'int32', shape, data: new Int32Array(xs) })),
);

const tensorArb = fc.oneof(f32TensorArb, i32TensorArb);
const nameArb = fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }).filter((s) => s !== '__metadata__' && s !== '__proto__');

/** A safetensors file from a header (object or raw text) and data bytes; `headerLen` overrides the length field. */
function buildFile(header: object | string, data: Uint8Array, headerLen?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function nonzeroBytes(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff);
}

describe('safetensors', () => {
  test('round-trips random tensors and metadata bit-exactly, and re-encodes identically', () => {
    fc.assert(
      fc.property(
        fc.dictionary(nameArb, tensorArb, { minKeys: 1, maxKeys: 6 }),
        fc.option(fc.dictionary(nameArb, fc.string({ unit: 'grapheme' }), { maxKeys: 3 }), { nil: undefined }),
        (tensors, metadata) => {
          const bytes = encodeSafetensors(tensors, metadata);
          const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
          assert.equal(headerLen % 8, 0);
          const decoded = decodeSafetensors(bytes);
          assert.deepEqual(decoded.metadata, { ...metadata });
          assert.deepEqual([...decoded.tensors.keys()].sort(), Object.keys(tensors).sort());
          for (const [k, t] of Object.entries(tensors)) assertSameTensor(decoded.tensors.get(k), t, k);
          assert.deepEqual(encodeSafetensors(decoded.tensors, metadata === undefined ? undefined : decoded.metadata), bytes);
        },
      ),
      { numRuns: 150 },
    );
  });

  test('accepts a Map, 0-d, size-1 and empty tensors', () => {
    const tensors = new Map<string, RawTensor>([
      ['scalar', { dtype: 'float32', shape: [], data: new Float32Array([-2.5]) }],
      ['ones', { dtype: 'int32', shape: [1, 1, 1], data: new Int32Array([-7]) }],
      ['empty', { dtype: 'float32', shape: [2, 0], data: new Float32Array(0) }],
    ]);
    const decoded = decodeSafetensors(encodeSafetensors(tensors));
    for (const [k, t] of tensors) assertSameTensor(decoded.tensors.get(k), t, k);
    assert.deepEqual(decoded.metadata, {});
  });

  test('lays out float32 before int32, each sorted by name, header keys in that order', () => {
    const bytes = encodeSafetensors({
      b: { dtype: 'float32', shape: [1], data: new Float32Array([1]) },
      a: { dtype: 'int32', shape: [1], data: new Int32Array([2]) },
      c: { dtype: 'float32', shape: [1], data: new Float32Array([3]) },
    }, { format: 'pt' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    assert.equal(
      text.trimEnd(),
      '{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
        '"c":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}}',
    );
  });

  test('reads from an unaligned view and at unaligned offsets into aligned arrays', () => {
    const f16 = new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00]);
    const f32 = new Uint8Array(new Float32Array([1.5, -3.25]).buffer);
    const file = buildFile(
      { h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] }, w: { dtype: 'F32', shape: [2], data_offsets: [6, 14] } },
      new Uint8Array([...f16, ...f32]),
    );
    const backing = new Uint8Array(file.length + 3);
    backing.set(file, 3);
    const { tensors } = decodeSafetensors(backing.subarray(3));
    assert.deepEqual([...tensors.get('w')!.data], [1.5, -3.25]);
    assert.equal(tensors.get('w')!.data.byteOffset % 4, 0);
    assert.deepEqual([...tensors.get('h')!.data], [1, -2, 2 ** -24]);
  });

  test('converts F16, BF16 and F64 to float32 exactly', () => {
    const half = [0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x3555];
    const halfExpected = [1, -2, 2 ** -24, 1023 * 2 ** -24, 65504, Infinity, -Infinity, -0, Math.fround(0.333251953125)];
    const bf = [0x3f80, 0xc049, 0x0001, 0xff80];
    const bfExpected = [1, -3.140625, 2 ** -133, -Infinity];
    const f64 = [Math.PI, -1e-300, 1e300, 0.1];
    const bytes = new Uint8Array(half.length * 2 + bf.length * 2 + f64.length * 8 + 2);
    const view = new DataView(bytes.buffer);
    half.forEach((h, i) => view.setUint16(2 * i, h, true));
    bf.forEach((h, i) => view.setUint16(18 + 2 * i, h, true));
    f64.forEach((x, i) => view.setFloat64(26 + 8 * i, x, true));
    view.setUint16(58, 0x7e00, true);
    const file = buildFile(
      {
        half: { dtype: 'F16', shape: [9], data_offsets: [0, 18] },
        bf: { dtype: 'BF16', shape: [2, 2], data_offsets: [18, 26] },
        wide: { dtype: 'F64', shape: [4], data_offsets: [26, 58] },
        nan: { dtype: 'F16', shape: [], data_offsets: [58, 60] },
      },
      bytes,
    );
    const { tensors } = decodeSafetensors(file);
    const same = (a: ArrayLike<number>, b: number[]) => assert.ok(b.every((x, i) => Object.is(a[i], x)), `${[...Array.from(a)]} vs ${b}`);
    same(tensors.get('half')!.data, halfExpected);
    same(tensors.get('bf')!.data, bfExpected);
    same(tensors.get('wide')!.data, f64.map(Math.fround));
    assert.ok(Number.isNaN(tensors.get('nan')!.data[0]));
    for (const t of tensors.values()) assert.equal(t.dtype, 'float32');
  });

  test('PEFT llama-tiny adapter decodes with PEFT key names and shapes, and re-encodes byte-identically', { skip: peftDir === undefined }, () => {
    const file = new Uint8Array(readFileSync(join(peftDir!, 'adapter_model.safetensors')));
    const config = JSON.parse(readFileSync(join(peftDir!, 'adapter_config.json'), 'utf8')) as { r: number; target_modules: string[] };
    const { tensors, metadata } = decodeSafetensors(file);
    assert.deepEqual(metadata, { format: 'pt' });
    const r = config.r;
    const dims: Record<string, [number, number]> = {
      q_proj: [16, 16], k_proj: [16, 16], v_proj: [16, 16], o_proj: [16, 16],
      gate_proj: [16, 40], up_proj: [16, 40], down_proj: [40, 16],
    };
    const expected = new Map<string, number[]>();
    for (const layer of [0, 1]) {
      for (const mod of config.target_modules) {
        const [inF, outF] = dims[mod]!;
        const parent = mod.endsWith('_proj') && ['gate_proj', 'up_proj', 'down_proj'].includes(mod) ? 'mlp' : 'self_attn';
        expected.set(`base_model.model.layers.${layer}.${parent}.${mod}.lora_A.weight`, [r, inF]);
        expected.set(`base_model.model.layers.${layer}.${parent}.${mod}.lora_B.weight`, [outF, r]);
      }
    }
    assert.deepEqual([...tensors.keys()].sort(), [...expected.keys()].sort());
    for (const [k, shape] of expected) {
      const t = tensors.get(k)!;
      assert.equal(t.dtype, 'float32');
      assert.deepEqual(t.shape, shape, k);
      assert.ok(t.data.every(Number.isFinite) && t.data.some((x) => x !== 0), `${k} values`);
    }
    assert.deepEqual(encodeSafetensors(tensors, metadata), file);
  });

  describe('rejects hostile or corrupt files', () => {
    const f32 = (n: number) => ({ dtype: 'F32', shape: [n], data_offsets: [0, 4 * n] });
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['a file under 8 bytes', new Uint8Array([1, 2, 3]), /too small/],
      ['header length 2^60', buildFile({ w: f32(1) }, nonzeroBytes(4), 2n ** 60n), /header length 1152921504606846976 exceeds the limit/],
      ['header length past the file', buildFile({ w: f32(1) }, nonzeroBytes(4), 4096n), /header length 4096 exceeds the \d+ bytes that follow/],
      ['invalid JSON', buildFile('{"w": {"dtype": "F32",', nonzeroBytes(4)), /not valid JSON/],
      ['a non-object header', buildFile('[1,2]', new Uint8Array(0)), /must be a JSON object/],
      ['invalid UTF-8', buildFile('{"\xff"}', new Uint8Array(0)).map((b, i) => (i === 10 ? 0xff : b)), /not valid UTF-8/],
      ['an unknown dtype', buildFile({ w: { dtype: 'Q8', shape: [4], data_offsets: [0, 4] } }, nonzeroBytes(4)), /'w': unsupported dtype "Q8"/],
      ['shape [1e9, 1e9]', buildFile({ big: { dtype: 'F32', shape: [1e9, 1e9], data_offsets: [0, 4] } }, nonzeroBytes(4)), /'big': element count of shape \[1000000000,1000000000\] overflows/],
      ['shape [1e5, 1e5] with 4 bytes', buildFile({ big: { dtype: 'F32', shape: [1e5, 1e5], data_offsets: [0, 4] } }, nonzeroBytes(4)), /'big': shape \[100000,100000\] of F32 needs 40000000000 bytes but data_offsets \[0, 4\] hold 4/],
      ['a shape/offset mismatch', buildFile({ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, nonzeroBytes(20)), /'w': shape \[2,3\] of F32 needs 24 bytes/],
      ['a negative dim', buildFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, new Uint8Array(0)), /'w': invalid dimension -1/],
      ['a non-integer dim', buildFile({ w: { dtype: 'F32', shape: [2.5], data_offsets: [0, 10] } }, nonzeroBytes(10)), /'w': invalid dimension 2.5/],
      ['offsets past the end', buildFile({ w: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, nonzeroBytes(16)), /'w': data_offsets \[8, 24\] run past the end of the data section \(16 bytes\)/],
      ['reversed offsets', buildFile({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, nonzeroBytes(8)), /'w': data_offsets must be \[begin, end\]/],
      [
        'overlapping offsets',
        buildFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, nonzeroBytes(12)),
        /'b': data_offsets \[4, 12\] overlap tensor 'a' \[0, 8\]/,
      ],
      [
        'a gap between tensors',
        buildFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, nonzeroBytes(12)),
        /'b': data_offsets \[8, 12\] leave a gap/,
      ],
      ['trailing bytes', buildFile({ w: f32(1) }, nonzeroBytes(12)), /tensors cover 4 bytes but the data section holds 12/],
      ['non-string metadata', buildFile({ __metadata__: { step: 3 }, w: f32(1) }, nonzeroBytes(4)), /metadata 'step' must be a string/],
    ];
    for (const [name, file, message] of cases) {
      test(name, () => assert.throws(() => decodeSafetensors(file), message));
    }

    test('a header over maxHeaderBytes', () => {
      const file = encodeSafetensors({ w: { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) } });
      assert.throws(() => decodeSafetensors(file, { maxHeaderBytes: 16 }), /exceeds the limit of 16 bytes/);
    });

    test('every truncation of a valid file', () => {
      const file = encodeSafetensors({
        a: { dtype: 'float32', shape: [3, 2], data: new Float32Array([1, -2, 3.5, 4, 5, 6]) },
        b: { dtype: 'int32', shape: [2], data: new Int32Array([7, -8]) },
      }, { format: 'pt' });
      fc.assert(
        fc.property(fc.integer({ min: 0, max: file.length - 1 }), (cut) => {
          assert.throws(() => decodeSafetensors(file.slice(0, cut)), (err: unknown) => err instanceof Error && /^safetensors/.test(err.message));
        }),
        { numRuns: 200 },
      );
    });

    test('random corruption either throws a clear Error or decodes consistently', () => {
      const file = encodeSafetensors({ a: { dtype: 'float32', shape: [4], data: new Float32Array([1, 2, 3, 4]) } });
      fc.assert(
        fc.property(fc.integer({ min: 0, max: file.length - 1 }), fc.integer({ min: 0, max: 255 }), (pos, byte) => {
          const bad = file.slice();
          bad[pos] = byte;
          try {
            const { tensors } = decodeSafetensors(bad);
            for (const t of tensors.values()) assert.equal(t.data.length, numel(t.shape));
          } catch (err) {
            assert.ok(err instanceof Error && /^safetensors/.test(err.message), String(err));
          }
        }),
        { numRuns: 300 },
      );
    });
  });

  test('encode rejects malformed tensors and the reserved key', () => {
    assert.throws(() => encodeSafetensors({ w: { dtype: 'float32', shape: [3], data: new Float32Array([1, 2]) } }), /'w': shape \[3\] needs 3 elements but data has 2/);
    assert.throws(() => encodeSafetensors({ w: { dtype: 'int32', shape: [1], data: new Float32Array([1]) } }), /'w': dtype int32 needs a Int32Array/);
    assert.throws(() => encodeSafetensors({ __metadata__: { dtype: 'float32', shape: [1], data: new Float32Array([1]) } }), /reserved/);
  });
});

/** Deep equality for checkpoint trees: tensors by bytes, numbers by Object.is. */
function assertSameValue(actual: CheckpointValue, expected: CheckpointValue, path = 'data'): void {
  if (expected !== null && typeof expected === 'object' && 'data' in expected && ArrayBuffer.isView(expected.data)) {
    assertSameTensor(actual as RawTensor, expected as RawTensor, path);
  } else if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), path);
    assert.equal(actual.length, expected.length, path);
    expected.forEach((x, i) => assertSameValue(actual[i]!, x, `${path}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    assert.ok(actual !== null && typeof actual === 'object' && !Array.isArray(actual), path);
    const a = actual as Record<string, CheckpointValue>;
    const e = expected as Record<string, CheckpointValue>;
    assert.deepEqual(Object.keys(a).sort(), Object.keys(e).sort(), path);
    for (const k of Object.keys(e)) assertSameValue(a[k]!, e[k]!, `${path}.${k}`);
  } else {
    assert.ok(Object.is(actual, expected), `${path}: ${String(actual)} !== ${String(expected)}`);
  }
}

const keyArb = fc.string({ maxLength: 8, unit: 'grapheme' }).filter((k) => k !== '__tensor__' && k !== '__proto__');
const { value: checkpointArb } = fc.letrec<{ value: CheckpointValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.double().filter((x) => !Object.is(x, -0)),
    fc.integer(),
    fc.string({ unit: 'grapheme' }),
    tensorArb,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(keyArb, tie('value'), { maxKeys: 4 }),
  ),
}));

const packr = new Packr({ useRecords: false });

function sampleCheckpoint(): CheckpointValue {
  return {
    step: 12,
    lr: 3e-4,
    name: 'run-α',
    done: false,
    parent: null,
    params: {
      'layers.0.self_attn.q_proj.lora_A.weight': { dtype: 'float32', shape: [2, 3], data: new Float32Array([0.5, -1, NaN, -0, Infinity, 1e-40]) },
      ids: { dtype: 'int32', shape: [3], data: new Int32Array([3, -1, 2147483647]) },
    },
    history: [1.25, 0.75, { scalar: { dtype: 'float32', shape: [], data: new Float32Array([7]) } }],
  };
}

describe('checkpoint', () => {
  test('round-trips random trees with tensors bit-exactly', () => {
    fc.assert(
      fc.property(checkpointArb, (value) => {
        assertSameValue(decodeCheckpoint(encodeCheckpoint(value)), value);
      }),
      { numRuns: 200 },
    );
  });

  test('is plain msgpack with a magic header and tensors as raw little-endian bin', () => {
    const value = sampleCheckpoint();
    const bytes = encodeCheckpoint(value);
    const tensor = (value as { params: Record<string, RawTensor> }).params['layers.0.self_attn.q_proj.lora_A.weight']!;
    const plain = new Packr({ useRecords: false, mapsAsObjects: true }).unpack(bytes) as { format: string; version: number; data: { params: Record<string, { __tensor__: number; bytes: Uint8Array }> } };
    assert.equal(plain.format, 'lowrank-checkpoint');
    assert.equal(plain.version, 1);
    const stored = plain.data.params['layers.0.self_attn.q_proj.lora_A.weight']!;
    assert.equal(stored.__tensor__, 1);
    assert.deepEqual(new Uint8Array(stored.bytes), bytesOf(tensor));
    assert.deepEqual([...bytes.subarray(0, 8)], [0x83, 0xa6, ...new TextEncoder().encode('format')]);
    assertSameValue(decodeCheckpoint(bytes), value);
  });

  test('decodes tensors at unaligned positions into aligned arrays', () => {
    const value: CheckpointValue = { s: 'x', t: { dtype: 'float32', shape: [2], data: new Float32Array([1.5, -2]) } };
    const bytes = encodeCheckpoint(value);
    for (const shift of [1, 2, 3]) {
      const backing = new Uint8Array(bytes.length + shift);
      backing.set(bytes, shift);
      assertSameValue(decodeCheckpoint(backing.subarray(shift)), value);
    }
  });

  describe('rejects corrupt or foreign files', () => {
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['wrong magic', packr.pack({ format: 'other-checkpoint', version: 1, data: 1 }), /not a lowrank checkpoint \(format is "other-checkpoint"/],
      ['a non-map file', packr.pack([1, 2, 3]), /not a lowrank checkpoint/],
      ['a newer version', packr.pack({ format: 'lowrank-checkpoint', version: 2, data: 1 }), /unsupported version 2/],
      ['a missing data field', packr.pack({ format: 'lowrank-checkpoint', version: 1 }), /missing the data field/],
      ['an empty file', new Uint8Array(0), /corrupt or truncated/],
      ['trailing garbage', new Uint8Array([...encodeCheckpoint({ a: 1 }), 0x01]), /corrupt or truncated/],
      [
        'tensor bytes that do not match the shape',
        packr.pack({ format: 'lowrank-checkpoint', version: 1, data: { w: { __tensor__: 1, dtype: 'float32', shape: [3], bytes: nonzeroBytes(8) } } }),
        /tensor at data\.w: shape \[3\] of float32 needs 12 bytes but 8 are stored/,
      ],
      [
        'a tensor shape [1e9, 1e9]',
        packr.pack({ format: 'lowrank-checkpoint', version: 1, data: { w: { __tensor__: 1, dtype: 'float32', shape: [1e9, 1e9], bytes: nonzeroBytes(8) } } }),
        /tensor at data\.w: element count of shape \[1000000000,1000000000\] overflows/,
      ],
      [
        'a tensor with an unknown dtype',
        packr.pack({ format: 'lowrank-checkpoint', version: 1, data: [{ __tensor__: 1, dtype: 'float16', shape: [1], bytes: nonzeroBytes(2) }] }),
        /tensor at data\[0\]: unsupported dtype "float16"/,
      ],
      [
        'tensor elements stored as numbers',
        packr.pack({ format: 'lowrank-checkpoint', version: 1, data: { w: { __tensor__: 1, dtype: 'float32', shape: [2], bytes: [1, 2] } } }),
        /bytes must be msgpack binary/,
      ],
      ['a msgpack extension value', packr.pack({ format: 'lowrank-checkpoint', version: 1, data: { when: new Date(1e12) } }), /unexpected Date at data\.when/],
    ];
    for (const [name, bytes, message] of cases) {
      test(name, () => assert.throws(() => decodeCheckpoint(bytes), message));
    }

    test('truncation at any cut point throws a clear Error', () => {
      const bytes = encodeCheckpoint(sampleCheckpoint());
      fc.assert(
        fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), (cut) => {
          assert.throws(() => decodeCheckpoint(bytes.slice(0, cut)), (err: unknown) => err instanceof Error && /^checkpoint/.test(err.message));
        }),
        { numRuns: 300 },
      );
    });

    test('random byte corruption throws a clear Error or yields a valid tree', () => {
      const bytes = encodeCheckpoint(sampleCheckpoint());
      fc.assert(
        fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), fc.integer({ min: 0, max: 255 }), (pos, byte) => {
          const bad = bytes.slice();
          bad[pos] = byte;
          try {
            decodeCheckpoint(bad);
          } catch (err) {
            assert.ok(err instanceof Error && /^checkpoint/.test(err.message), String(err));
          }
        }),
        { numRuns: 500 },
      );
    });
  });

  test('encode rejects values that are not checkpoint values', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const bad: Array<[unknown, RegExp]> = [
      [{ a: undefined }, /cannot store undefined at data\.a/],
      [{ m: new Map() }, /cannot store Map at data\.m/],
      [[1n], /cannot store bigint at data\[0\]/],
      [cyclic, /circular reference at data\.self/],
      [{ __tensor__: 1 }, /'__tensor__' at data is reserved/],
      [JSON.parse('{"__proto__": 1}'), /'__proto__'/],
      [{ w: { dtype: 'float32', shape: [2, 2], data: new Float32Array([1, 2, 3]) } }, /tensor at data\.w: shape \[2,2\] needs 4 elements but data has 3/],
    ];
    for (const [value, message] of bad) assert.throws(() => encodeCheckpoint(value as CheckpointValue), message);
  });
});

describe('atomic writes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowrank-atomic-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const old = nonzeroBytes(64);

  function freshTarget(name: string): string {
    const path = join(dir, name);
    writeFileSync(path, old);
    return path;
  }
  function leftovers(name: string): string[] {
    return readdirSync(dir).filter((f) => f.startsWith(`${name}.tmp-`));
  }

  test('writeFileAtomic replaces the file and leaves no temp file', async () => {
    const path = freshTarget('a.bin');
    const bytes = encodeSafetensors({ w: { dtype: 'float32', shape: [3], data: new Float32Array([1, 2, 3]) } });
    await writeFileAtomic(path, bytes);
    assert.deepEqual(new Uint8Array(readFileSync(path)), bytes);
    assert.deepEqual(leftovers('a.bin'), []);
  });

  test('writeFileAtomicSync writes chunks in order', () => {
    const path = join(dir, 'b.bin');
    writeFileAtomicSync(path, [nonzeroBytes(5), new Uint8Array([9, 8]), nonzeroBytes(70000)]);
    assert.deepEqual(new Uint8Array(readFileSync(path)), new Uint8Array([...nonzeroBytes(5), 9, 8, ...nonzeroBytes(70000)]));
    assert.deepEqual(leftovers('b.bin'), []);
  });

  test('a failure mid-write (async) keeps the old file and removes the temp file', async () => {
    const path = freshTarget('c.bin');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield nonzeroBytes(4096);
      assert.equal(leftovers('c.bin').length, 1, 'temp file exists while writing');
      throw new Error('producer failed');
    }
    await assert.rejects(writeFileAtomic(path, failing()), /producer failed/);
    assert.deepEqual(new Uint8Array(readFileSync(path)), old);
    assert.deepEqual(leftovers('c.bin'), []);
  });

  test('a failure mid-write (sync) keeps the old file and removes the temp file', () => {
    const path = freshTarget('d.bin');
    function* failing(): Generator<Uint8Array> {
      yield nonzeroBytes(4096);
      throw new Error('producer failed');
    }
    assert.throws(() => writeFileAtomicSync(path, failing()), /producer failed/);
    assert.deepEqual(new Uint8Array(readFileSync(path)), old);
    assert.deepEqual(leftovers('d.bin'), []);
  });

  test('a failed rename keeps the target and removes the temp file', async () => {
    const path = join(dir, 'e.dir');
    mkdirSync(path);
    writeFileSync(join(path, 'keep'), old);
    await assert.rejects(writeFileAtomic(path, nonzeroBytes(8)));
    assert.throws(() => writeFileAtomicSync(path, nonzeroBytes(8)));
    assert.deepEqual(new Uint8Array(readFileSync(join(path, 'keep'))), old);
    assert.deepEqual(leftovers('e.dir'), []);
  });

  test('writeFileAtomicSync removes the temps killed saves left, not those of a live process', () => {
    const path = join(dir, 'g.bin');
    // A pid that was alive and is gone (a finished child), and one that is alive (our parent).
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const dead = `g.bin.tmp-${gone.stdout}-0123456789ab`;
    const live = `g.bin.tmp-${process.ppid}-0123456789ab`;
    for (const f of [dead, live]) writeFileSync(join(dir, f), nonzeroBytes(16));
    writeFileAtomicSync(path, nonzeroBytes(8));
    assert.deepEqual(leftovers('g.bin'), [live]);
    rmSync(join(dir, live));
  });

  test('a missing directory rejects without creating anything', async () => {
    await assert.rejects(writeFileAtomic(join(dir, 'missing', 'f.bin'), nonzeroBytes(8)), /ENOENT/);
    assert.throws(() => writeFileAtomicSync(join(dir, 'missing', 'f.bin'), nonzeroBytes(8)), /ENOENT/);
  });
});
