/** Shared helpers for the pre-trained model tests: fixture discovery, comparisons, Hub-layout writers. */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { encodeSafetensors, type RawTensor, type Tensor } from '@lowrank/core';
import type { Module } from '@lowrank/nn';
import { fixturesDir } from '../fixtures-dir.ts';

export interface FixtureArray {
  shape: number[];
  data: number[];
}

export interface HfExpected {
  inputIds: FixtureArray;
  logits: FixtureArray;
  loss: number;
  greedy: { prompt: number[]; tokens: number[]; minMargin: number };
  lora?: {
    adapter: string;
    logits: FixtureArray;
    loss: number;
    greedy: { tokens: number[] };
    merged: { key: string; value: FixtureArray };
  };
}

export interface HfFixture {
  name: string;
  dir: string;
  config: Record<string, unknown>;
  expected: HfExpected;
  adapterDir: string | null;
}

export const hfDir = path.join(fixturesDir, 'hf');

/** Every model directory under fixtures/hf that has config.json and expected.json. */
export function hfFixtures(): HfFixture[] {
  if (!existsSync(hfDir)) return [];
  return readdirSync(hfDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(path.join(hfDir, d.name, 'config.json')) && existsSync(path.join(hfDir, d.name, 'expected.json')))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const dir = path.join(hfDir, name);
      const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as HfExpected;
      const adapterDir = expected.lora ? path.resolve(dir, expected.lora.adapter) : null;
      return { name, dir, config: JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')), expected, adapterDir };
    });
}

/** |got - want| <= atol + rtol |want| everywhere; the message names the worst index. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, atol = 1e-4, rtol = 1e-4): number {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const excess = err - (atol + rtol * Math.abs(want[i]));
    if (!(excess <= 0) && (at < 0 || excess > worst)) {
      worst = excess;
      at = i;
    }
  }
  assert.ok(at < 0, `${what}: index ${at} is ${got[at]}, expected ${want[at]} (atol ${atol}, rtol ${rtol})`);
  let maxErr = 0;
  for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
  return maxErr;
}

/** Byte equality of two float arrays (so -0 and NaN payloads count). */
export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Every parameter's values by key (tied ones under each key). */
export function stateValues(m: Module): Map<string, Float32Array> {
  return new Map(Object.entries(m.stateDict()).map(([k, t]) => [k, Float32Array.from((t as Tensor).dataSync())]));
}

export function assertSameState(a: Module, b: Module, what: string): void {
  const va = stateValues(a);
  const vb = stateValues(b);
  assert.deepEqual([...va.keys()].sort(), [...vb.keys()].sort(), `${what}: different keys`);
  for (const [k, v] of va) assert.ok(bitsEqual(v, vb.get(k)!), `${what}: '${k}' differs`);
}

/** Rounds float32 values to bfloat16 (nearest, ties to even) and returns the bf16 bit patterns. */
export function toBf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u[i];
    out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** A stored tensor for writeSafetensors: float32 values, written as F32, BF16 or F16. */
export interface StoredTensor {
  shape: number[];
  data: Float32Array;
  dtype?: 'F32' | 'BF16' | 'F16';
}

function f32ToF16Bits(v: number): number {
  // Test-only conversion for values well inside the half range (round to nearest).
  const f = new Float32Array([v]);
  const b = new Uint32Array(f.buffer)[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = ((b >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign;
  const mant = b & 0x7fffff;
  let h = sign | (exp << 10) | (mant >>> 13);
  if (mant & 0x1000) h++;
  return h;
}

/** The float32 values a stored tensor reads back as (after bf16/f16 rounding). */
export function storedValues(t: StoredTensor): Float32Array {
  if (!t.dtype || t.dtype === 'F32') return t.data;
  if (t.dtype === 'BF16') {
    const bits = toBf16Bits(t.data);
    const out = new Float32Array(bits.length);
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
    return out;
  }
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = halfToFloat(f32ToF16Bits(t.data[i]));
  return out;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * A safetensors file with mixed dtypes, written independently of the code
 * under test (F32 through core's encoder, 16-bit ones by hand).
 */
export function writeSafetensors(tensors: Record<string, StoredTensor>, extra: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }> = {}): Uint8Array {
  const entries: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.dtype ?? 'F32';
    let bytes: Uint8Array;
    if (dtype === 'F32') bytes = new Uint8Array(Float32Array.from(t.data).buffer);
    else {
      const bits = dtype === 'BF16' ? toBf16Bits(t.data) : Uint16Array.from(t.data, f32ToF16Bits);
      bytes = new Uint8Array(bits.buffer);
    }
    entries.push({ name, dtype, shape: t.shape, bytes });
  }
  for (const [name, e] of Object.entries(extra)) entries.push({ name, ...e });
  if (entries.every((e) => e.dtype === 'F32')) {
    const raw: Record<string, RawTensor> = {};
    for (const [name, t] of Object.entries(tensors)) raw[name] = { dtype: 'float32', shape: t.shape, data: Float32Array.from(t.data) };
    return encodeSafetensors(raw, { format: 'pt' });
  }
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.bytes.length] };
    off += e.bytes.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let pos = 8 + padded;
  for (const e of entries) {
    out.set(e.bytes, pos);
    pos += e.bytes.length;
  }
  json = new Uint8Array(0);
  return out;
}

export const utf8 = (o: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(o));
