/**
 * Qwen2 (transformers' Qwen2ForCausalLM): the LLaMA network of `llama.ts`
 * with biases on q_proj, k_proj and v_proj (none on o_proj or the MLP), and
 * usually a large rope_theta and tied embeddings — all read from config.json
 * (`parseConfig` sets `qkvBias` for model_type qwen2). Same module names and
 * state-dict keys as LLaMA.
 */
import { LlamaForCausalLM } from './llama.ts';

/** @example const model = new Qwen2ForCausalLM(parseConfig(json) as LlamaConfig); */
export class Qwen2ForCausalLM extends LlamaForCausalLM {}
