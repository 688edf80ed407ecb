/**
 * Plain float64 forwards of GPT-2 and LLaMA/Qwen2 written from transformers'
 * definitions, straight from state-dict values (no lowrank ops), so that
 * checkpoints of sizes no fixture has (explicit head_dim, other GQA ratios,
 * other widths) still get an independent reference.
 */
type SD = Map<string, Float32Array>;

function get(sd: SD, k: string): Float32Array {
  const v = sd.get(k);
  if (!v) throw new Error(`reference: no tensor '${k}'`);
  return v;
}

/** x [T, inF] times W: `[out, in]` (Linear) when outIn, else `[in, out]` (Conv1D); plus bias. */
function proj(x: Float64Array[], w: Float32Array, inF: number, outF: number, outIn: boolean, b?: Float32Array): Float64Array[] {
  return x.map((row) => {
    const y = new Float64Array(outF);
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) s += row[i] * (outIn ? w[o * inF + i] : w[i * outF + o]);
      y[o] = s;
    }
    return y;
  });
}

function layerNorm(x: Float64Array[], w: Float32Array, b: Float32Array, eps: number): Float64Array[] {
  return x.map((row) => {
    const n = row.length;
    const mean = row.reduce((s, v) => s + v, 0) / n;
    const v = row.reduce((s, a) => s + (a - mean) ** 2, 0) / n;
    return row.map((a, i) => ((a - mean) / Math.sqrt(v + eps)) * w[i] + b[i]);
  });
}

function rmsNorm(x: Float64Array[], w: Float32Array, eps: number): Float64Array[] {
  return x.map((row) => {
    const ms = row.reduce((s, a) => s + a * a, 0) / row.length;
    return row.map((a, i) => (a / Math.sqrt(ms + eps)) * w[i]);
  });
}

const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const silu = (x: number): number => x / (1 + Math.exp(-x));

/** Causal attention for one sequence: q [T][H*D], k/v [T][Hkv*D]; query head h reads kv head floor(h / (H/Hkv)). */
function attention(q: Float64Array[], k: Float64Array[], v: Float64Array[], H: number, Hkv: number, D: number, scale: number): Float64Array[] {
  const T = q.length;
  const out = Array.from({ length: T }, () => new Float64Array(H * D));
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / (H / Hkv));
    for (let t = 0; t < T; t++) {
      const scores: number[] = [];
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[t][h * D + d] * k[s][g * D + d];
        scores.push(dot * scale);
      }
      const m = Math.max(...scores);
      const e = scores.map((x) => Math.exp(x - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let s = 0; s <= t; s++) for (let d = 0; d < D; d++) out[t][h * D + d] += (e[s] / z) * v[s][g * D + d];
    }
  }
  return out;
}

function addRows(a: Float64Array[], b: Float64Array[]): Float64Array[] {
  return a.map((row, t) => row.map((x, i) => x + b[t][i]));
}

/** Logits [T][V] of one sequence through GPT2LMHeadModel. */
export function gpt2Reference(sd: SD, c: Record<string, number>, ids: number[]): Float64Array[] {
  const C = c.n_embd;
  const H = c.n_head;
  const D = C / H;
  const inner = c.n_inner ?? 4 * C;
  const eps = c.layer_norm_epsilon ?? 1e-5;
  const wte = get(sd, 'transformer.wte.weight');
  const wpe = get(sd, 'transformer.wpe.weight');
  let x: Float64Array[] = ids.map((id, t) => Float64Array.from({ length: C }, (_, i) => wte[id * C + i] + wpe[t * C + i]));
  for (let l = 0; l < c.n_layer; l++) {
    const p = (n: string): Float32Array => get(sd, `transformer.h.${l}.${n}`);
    const n1 = layerNorm(x, p('ln_1.weight'), p('ln_1.bias'), eps);
    const qkv = proj(n1, p('attn.c_attn.weight'), C, 3 * C, false, p('attn.c_attn.bias'));
    const q = qkv.map((r) => r.slice(0, C));
    const k = qkv.map((r) => r.slice(C, 2 * C));
    const v = qkv.map((r) => r.slice(2 * C));
    const a = proj(attention(q, k, v, H, H, D, 1 / Math.sqrt(D)), p('attn.c_proj.weight'), C, C, false, p('attn.c_proj.bias'));
    x = addRows(x, a);
    const n2 = layerNorm(x, p('ln_2.weight'), p('ln_2.bias'), eps);
    const h = proj(n2, p('mlp.c_fc.weight'), C, inner, false, p('mlp.c_fc.bias')).map((r) => r.map(geluTanh));
    x = addRows(x, proj(h, p('mlp.c_proj.weight'), inner, C, false, p('mlp.c_proj.bias')));
  }
  const n = layerNorm(x, get(sd, 'transformer.ln_f.weight'), get(sd, 'transformer.ln_f.bias'), eps);
  return proj(n, sd.get('lm_head.weight') ?? wte, C, c.vocab_size, true);
}

function rope(x: Float64Array[], nHeads: number, D: number, theta: number): Float64Array[] {
  const half = D / 2;
  return x.map((row, t) => {
    const out = new Float64Array(row.length);
    for (let h = 0; h < nHeads; h++) {
      for (let j = 0; j < half; j++) {
        const angle = t * theta ** ((-2 * j) / D);
        const [c, s] = [Math.cos(angle), Math.sin(angle)];
        const x1 = row[h * D + j];
        const x2 = row[h * D + j + half];
        out[h * D + j] = x1 * c - x2 * s;
        out[h * D + j + half] = x2 * c + x1 * s;
      }
    }
    return out;
  });
}

/** Logits [T][V] of one sequence through LlamaForCausalLM / Qwen2ForCausalLM. */
export function llamaReference(sd: SD, c: Record<string, unknown>, ids: number[]): Float64Array[] {
  const C = c.hidden_size as number;
  const H = c.num_attention_heads as number;
  const Hkv = (c.num_key_value_heads as number | undefined) ?? H;
  const D = (c.head_dim as number | undefined) ?? C / H;
  const I = c.intermediate_size as number;
  const eps = (c.rms_norm_eps as number | undefined) ?? 1e-6;
  const theta = (c.rope_theta as number | undefined) ?? 10000;
  const emb = get(sd, 'model.embed_tokens.weight');
  const bias = (k: string): Float32Array | undefined => sd.get(k);
  let x: Float64Array[] = ids.map((id) => Float64Array.from({ length: C }, (_, i) => emb[id * C + i]));
  for (let l = 0; l < (c.num_hidden_layers as number); l++) {
    const k0 = `model.layers.${l}.`;
    const p = (n: string): Float32Array => get(sd, k0 + n);
    const n1 = rmsNorm(x, p('input_layernorm.weight'), eps);
    const q = rope(proj(n1, p('self_attn.q_proj.weight'), C, H * D, true, bias(`${k0}self_attn.q_proj.bias`)), H, D, theta);
    const k = rope(proj(n1, p('self_attn.k_proj.weight'), C, Hkv * D, true, bias(`${k0}self_attn.k_proj.bias`)), Hkv, D, theta);
    const v = proj(n1, p('self_attn.v_proj.weight'), C, Hkv * D, true, bias(`${k0}self_attn.v_proj.bias`));
    const a = proj(attention(q, k, v, H, Hkv, D, 1 / Math.sqrt(D)), p('self_attn.o_proj.weight'), H * D, C, true, bias(`${k0}self_attn.o_proj.bias`));
    x = addRows(x, a);
    const n2 = rmsNorm(x, p('post_attention_layernorm.weight'), eps);
    const g = proj(n2, p('mlp.gate_proj.weight'), C, I, true);
    const u = proj(n2, p('mlp.up_proj.weight'), C, I, true);
    const h = g.map((r, t) => r.map((gv, i) => silu(gv) * u[t][i]));
    x = addRows(x, proj(h, p('mlp.down_proj.weight'), I, C, true));
  }
  const n = rmsNorm(x, get(sd, 'model.norm.weight'), eps);
  return proj(n, sd.get('lm_head.weight') ?? emb, C, c.vocab_size as number, true);
}
