/**
 * The GL modes' attention forward, fused: out[h, i, d..d+3] =
 * sum_j exp(q_i . k_j * scale - lse_i) v_j[d..d+3] in one pass, so the
 * [T, T] probabilities are never stored in the forward pass (the backward
 * recomputes them once). Each fragment keeps q_i in registers (the head
 * size is structural, so it is baked in; sequence lengths are uniforms and
 * a new one reuses the shader) and reads k and v as vec4 texels.
 */
import { GlSource, HELPERS, type GlMatmul } from './matmul-gl.ts';

export interface GlKernel extends GlMatmul {
  floats: number[];
}

/** Whether the fused kernel serves these head sizes (vec4 reads of q, k and v rows). */
export function glAttentionFits(dk: number, dv: number, tk: number): boolean {
  return dk % 4 === 0 && dv % 4 === 0 && dk > 0 && dv > 0 && tk > 0;
}

/**
 * out [bh, tq, dv] from q [bh, tq, dk], k [bh, tk, dk], v [bh, tk, dv] and the row log-sum-exps lse [bh * tq];
 * with `heads`, q, k, v and out are [B, T, heads, D] (consecutive rows of one head are `heads` rows apart).
 */
export function glAttention(
  bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean, webgl2: boolean, heads?: number,
): GlKernel {
  const g = new GlSource(webgl2);
  const u = (v: number): string => g.int(v);
  const fetch = (arg: string, p: string): string => g.fetch(arg, p);
  const size = bh * tq * dv;
  const total = u(size);
  const nDv = u(dv);
  const nTq = u(tq);
  const nTk = u(tk);
  const lastOff = u(causal ? tk - tq : 0);
  const q4 = dk / 4;
  let body = `vec4 lrAttention() {\n  int o = index * 4;\n  if (o >= ${total}) { return vec4(0.0); }\n`;
  body += `  ivec2 rd = lrSplit(o, ${nDv});\n  int d = rd.y;\n`;
  // row: the lse row (head * tq + i); ownRow: q's and out's row in memory; otherRow0: key 0's row; kStep: rows between keys.
  body += heads ? headRowCode(u(heads), nTq, nTk, 'hi') : `  int row = rd.x;\n  ivec2 hi = lrSplit(row, ${nTq});\n  int ownRow = row;\n  int otherRow0 = hi.x * ${nTk};\n`;
  body += causal ? `  int last = hi.y + ${lastOff};\n` : `  int last = ${nTk} - 1;\n`;
  body += '  vec2 iq = 1.0 / vec2(user_qSize);\n  vec2 ik = 1.0 / vec2(user_kSize);\n  vec2 iv = 1.0 / vec2(user_vSize);\n';
  body += '  vec2 ilse = 1.0 / vec2(user_lseSize);\n';
  body += `  ivec2 lq = lrSplit(row, 4);\n  float l = lrPick(${fetch('lse', 'lrTexel(lq.x, user_lseSize)')}, lq.y);\n`;
  body += `  ivec2 pq = lrTexel(ownRow * ${q4}, user_qSize);\n`;
  for (let c = 0; c < q4; c++) body += `  vec4 q${c} = ${fetch('q', 'pq')};\n  pq = lrStep(pq, ivec2(1, 0), user_qSize.x);\n`;
  body += `  ivec2 pk = lrTexel(otherRow0 * ${q4}, user_kSize);\n`;
  if (heads) body += `  ivec2 skipK = lrTexel((${u(heads)} - 1) * ${q4}, user_kSize);\n`;
  const kStep = heads ? `${u(heads)} * ` : '';
  body += `  ivec2 pv = lrTexel((otherRow0 * ${nDv} + d) / 4, user_vSize);\n  ivec2 sv = lrTexel(${kStep}${nDv} / 4, user_vSize);\n`;
  body += '  vec4 acc = vec4(0.0);\n  for (int j = 0; j < LOOP_MAX; j++) {\n';
  body += `    if (j > last || j >= ${nTk}) { break; }\n    float s = 0.0;\n`;
  for (let c = 0; c < q4; c++) body += `    s += dot(q${c}, ${fetch('k', 'pk')});\n    pk = lrStep(pk, ivec2(1, 0), user_kSize.x);\n`;
  if (heads) body += '    pk = lrStep(pk, skipK, user_kSize.x);\n';
  body += `    acc += exp(s * user_f0 - l) * ${fetch('v', 'pv')};\n    pv = lrStep(pv, sv, user_vSize.x);\n  }\n  return acc;\n}\n`;
  const stub = g.stub(['q', 'k', 'v', 'lse'], ['f0']);
  return { src: stub, raw: { helpers: HELPERS + body, result: 'lrAttention()' }, size, loop: tk, ints: g.ints, floats: [scale] };
}

/**
 * dV [bh, tk, dv] = P^T dout with P recomputed in place (never stored):
 * each fragment keeps k_j in registers and walks the query rows i that see
 * key j, dV[h, j, d..d+3] += exp(q_i . k_j * scale - lse_i) dout[h, i, d..d+3].
 */
export function glAttentionDv(
  bh: number, tq: number, tk: number, dk: number, dv: number, scale: number, causal: boolean, webgl2: boolean, heads?: number,
): GlKernel {
  const g = new GlSource(webgl2);
  const u = (v: number): string => g.int(v);
  const fetch = (arg: string, p: string): string => g.fetch(arg, p);
  const size = bh * tk * dv;
  const total = u(size);
  const nDv = u(dv);
  const nTq = u(tq);
  const nTk = u(tk);
  const off = u(causal ? tk - tq : 0);
  const k4 = dk / 4;
  let body = `vec4 lrAttentionDv() {\n  int o = index * 4;\n  if (o >= ${total}) { return vec4(0.0); }\n`;
  body += `  ivec2 rd = lrSplit(o, ${nDv});\n  int d = rd.y;\n`;
  // h: the head (lse rows h * tq + i); ownRow: k_j's and dv's row in memory; otherRow0: query 0's row; the query step is 1 or heads rows.
  body += heads ? headRowCode(u(heads), nTk, nTq, 'hj') : `  int row = rd.x;\n  ivec2 hj = lrSplit(row, ${nTk});\n  int ownRow = row;\n  int otherRow0 = hj.x * ${nTq};\n`;
  body += '  int h = hj.x;\n';
  // Query i sees key j when j <= i + off (causal): rows from max(0, j - off).
  body += causal ? `  int i0 = hj.y - ${off};\n  if (i0 < 0) { i0 = 0; }\n` : '  int i0 = 0;\n';
  body += '  vec2 iq = 1.0 / vec2(user_qSize);\n  vec2 ik = 1.0 / vec2(user_kSize);\n  vec2 idout = 1.0 / vec2(user_doutSize);\n';
  body += '  vec2 ilse = 1.0 / vec2(user_lseSize);\n';
  body += `  ivec2 pk = lrTexel(ownRow * ${k4}, user_kSize);\n`;
  for (let c = 0; c < k4; c++) body += `  vec4 k${c} = ${fetch('k', 'pk')};\n  pk = lrStep(pk, ivec2(1, 0), user_kSize.x);\n`;
  const qStep = heads ? u(heads) : '1';
  body += `  int r0 = otherRow0 + i0 * ${qStep};\n  ivec2 pq = lrTexel(r0 * ${k4}, user_qSize);\n`;
  if (heads) body += `  ivec2 skipQ = lrTexel((${qStep} - 1) * ${k4}, user_qSize);\n`;
  body += `  ivec2 pd = lrTexel((r0 * ${nDv} + d) / 4, user_doutSize);\n  ivec2 sd = lrTexel(${heads ? `${qStep} * ` : ''}${nDv} / 4, user_doutSize);\n`;
  body += '  vec4 acc = vec4(0.0);\n  for (int t = 0; t < LOOP_MAX; t++) {\n';
  body += `    int i = i0 + t;\n    if (i >= ${nTq}) { break; }\n    float s = 0.0;\n`;
  for (let c = 0; c < k4; c++) body += `    s += dot(k${c}, ${fetch('q', 'pq')});\n    pq = lrStep(pq, ivec2(1, 0), user_qSize.x);\n`;
  if (heads) body += '    pq = lrStep(pq, skipQ, user_qSize.x);\n';
  body += `    ivec2 lq = lrSplit(h * ${nTq} + i, 4);\n    float l = lrPick(${fetch('lse', 'lrTexel(lq.x, user_lseSize)')}, lq.y);\n`;
  body += `    acc += exp(s * user_f0 - l) * ${fetch('dout', 'pd')};\n    pd = lrStep(pd, sd, user_doutSize.x);\n  }\n  return acc;\n}\n`;
  const stub = g.stub(['q', 'k', 'lse', 'dout'], ['f0']);
  return { src: stub, raw: { helpers: HELPERS + body, result: 'lrAttentionDv()' }, size, loop: tq, ints: g.ints, floats: [scale] };
}

/**
 * GLSL for the [B, T, heads, D] layout: from rd.x (a row in memory) declares `name` = (head
 * index b * heads + h, t), `row` (that head's row head * T + t, for lse), `ownRow` (rd.x) and
 * `otherRow0` (the other operand's row 0 of the same head, T2 rows per batch, consecutive rows `heads` apart).
 */
function headRowCode(nH: string, nT: string, nT2: string, name: string): string {
  return `  ivec2 ph = lrSplit(rd.x, ${nH});\n  ivec2 bt = lrSplit(ph.x, ${nT});\n` +
    `  ivec2 ${name} = ivec2(bt.x * ${nH} + ph.y, bt.y);\n  int row = ${name}.x * ${nT} + bt.y;\n  int ownRow = rd.x;\n` +
    `  int otherRow0 = bt.x * ${nT2} * ${nH} + ph.y;\n`;
}
