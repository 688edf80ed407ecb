/**
 * What LoRA can give at best, counted from the config: matmul FLOPs of one
 * training step and the bytes of training state, for full fine-tuning and for
 * LoRA. The measured ratios are printed next to these.
 *
 * FLOPs: a Linear(in, out) over N tokens costs 2·N·in·out forward, the same
 * again for dX when its input needs a gradient, and the same again for dW only
 * when the weight is trainable. Attention adds its score (QKᵀ) and value (PV)
 * matmuls, 2·B·T²·C each, and their gradients where needed. A LoRA branch
 * costs 2·N·r·(in + out) forward and about twice that backward (dA, dB, the
 * dX through A). Elementwise ops, norms, softmax and the optimizer are not
 * counted: they are the fixed costs that keep a measured ratio above this one.
 */
import type { TransformerConfig } from '@lowrank/nn';

export interface LoraSpec {
  r: number;
  /** Linear names that get an adapter (suffix match, like `q_proj`). */
  targets: readonly string[];
}

export interface StepFlops {
  forward: number;
  /** Input gradients (dX) of linears and attention. */
  backwardInput: number;
  /** Weight gradients (dW) of trainable linears. */
  backwardWeight: number;
  /** All adapter work (forward and backward), included in the three above. */
  lora: number;
  total: number;
}

interface LinearShape {
  name: string;
  in: number;
  out: number;
}

function blockLinears(c: TransformerConfig): LinearShape[] {
  const inner = c.nHead * c.headDim;
  const attn: LinearShape[] = [
    { name: 'q_proj', in: c.nEmbd, out: inner },
    { name: 'k_proj', in: c.nEmbd, out: inner },
    { name: 'v_proj', in: c.nEmbd, out: inner },
    { name: 'o_proj', in: inner, out: c.nEmbd },
  ];
  const mlp: LinearShape[] = c.mlp === 'swiglu'
    ? [
      { name: 'gate_proj', in: c.nEmbd, out: c.intermediateSize },
      { name: 'up_proj', in: c.nEmbd, out: c.intermediateSize },
      { name: 'down_proj', in: c.intermediateSize, out: c.nEmbd },
    ]
    : [
      { name: 'up_proj', in: c.nEmbd, out: c.intermediateSize },
      { name: 'down_proj', in: c.intermediateSize, out: c.nEmbd },
    ];
  return [...attn, ...mlp];
}

/**
 * Matmul FLOPs of one step (forward + backward) on a batch of `batchSize` x blockSize tokens.
 * Without `lora` every parameter trains; with it only the adapters do and the base is frozen.
 */
export function stepFlops(c: TransformerConfig, batchSize: number, lora?: LoraSpec): StepFlops {
  const T = c.blockSize;
  const N = batchSize * T;
  const inner = c.nHead * c.headDim;
  const f: StepFlops = { forward: 0, backwardInput: 0, backwardWeight: 0, lora: 0, total: 0 };
  const full = lora === undefined;
  // Does the residual stream entering the current layer need a gradient? The
  // embeddings train in full mode; with LoRA only what follows an adapter does.
  let streamNeedsGrad = full;
  const adapted = (name: string): boolean => lora !== undefined && lora.targets.some((t) => name === t || name.endsWith(`.${t}`));
  for (let l = 0; l < c.nLayer; l++) {
    const xNeedsGrad = streamNeedsGrad;
    // Which tensors need a gradient inside this block (they gate dX work).
    const grad = { q: false, k: false, v: false, mlpIn: xNeedsGrad, hidden: false };
    for (const lin of blockLinears(c)) {
      const inputNeedsGrad = ['q_proj', 'k_proj', 'v_proj'].includes(lin.name) ? xNeedsGrad
        : lin.name === 'o_proj' ? grad.q || grad.k || grad.v
          : lin.name === 'down_proj' ? grad.hidden
            : grad.mlpIn;
      const mm = 2 * N * lin.in * lin.out;
      f.forward += mm;
      if (inputNeedsGrad) f.backwardInput += mm;
      if (full) f.backwardWeight += mm;
      let outNeedsGrad = full || inputNeedsGrad;
      if (lora && adapted(lin.name)) {
        const r = lora.r;
        const fwd = 2 * N * r * (lin.in + lin.out);
        const dB = 2 * N * r * lin.out;
        const dMid = 2 * N * r * lin.out;
        const dA = 2 * N * lin.in * r;
        const dX = inputNeedsGrad ? 2 * N * lin.in * r : 0;
        f.forward += fwd;
        f.backwardWeight += dA + dB;
        f.backwardInput += dMid + dX;
        f.lora += fwd + dA + dB + dMid + dX;
        outNeedsGrad = true;
      }
      if (lin.name === 'q_proj') grad.q = outNeedsGrad;
      if (lin.name === 'k_proj') grad.k = outNeedsGrad;
      if (lin.name === 'gate_proj' || lin.name === 'up_proj') grad.hidden ||= outNeedsGrad;
      if (lin.name === 'v_proj') {
        grad.v = outNeedsGrad;
        // Attention: S = QKᵀ and Y = PV, 2·B·T²·inner each (causal masking is not exploited).
        const att = 2 * batchSize * T * T * inner;
        f.forward += 2 * att;
        if (grad.q || grad.k) f.backwardInput += att; // dP = dY Vᵀ
        if (grad.v) f.backwardInput += att; // dV = Pᵀ dY
        if (grad.q) f.backwardInput += att; // dQ = dS K
        if (grad.k) f.backwardInput += att; // dK = dSᵀ Q
      }
      if (lin.name === 'o_proj') grad.mlpIn = outNeedsGrad || xNeedsGrad;
    }
    streamNeedsGrad = grad.mlpIn || grad.hidden;
  }
  // lm_head (tied or not): dX is needed whenever anything before it trains.
  const head = 2 * N * c.nEmbd * c.vocabSize;
  f.forward += head;
  if (streamNeedsGrad) f.backwardInput += head;
  if (full) f.backwardWeight += head;
  f.total = f.forward + f.backwardInput + f.backwardWeight;
  return f;
}

/** Parameter count of a config (tied head counted once), as `namedParameters` deduplicates. */
export function paramCount(c: TransformerConfig): number {
  const C = c.nEmbd;
  const bias = c.bias ? 1 : 0;
  const norm = c.norm === 'layerNorm' && c.bias ? 2 * C : C;
  let block = 2 * norm;
  for (const lin of blockLinears(c)) block += lin.in * lin.out + bias * lin.out;
  let n = c.vocabSize * C + c.nLayer * block + norm;
  if (c.positionEmbedding === 'learned') n += c.blockSize * C;
  if (!c.tieWordEmbeddings) n += C * c.vocabSize;
  return n;
}

/** Adapter parameters: r·(in + out) per targeted linear. */
export function loraParamCount(c: TransformerConfig, lora: LoraSpec): number {
  let n = 0;
  for (const lin of blockLinears(c)) {
    if (lora.targets.some((t) => lin.name === t || lin.name.endsWith(`.${t}`))) n += lora.r * (lin.in + lin.out);
  }
  return n * c.nLayer;
}

export interface StateBytes {
  weights: number;
  grads: number;
  optimizer: number;
  total: number;
}

/**
 * Training state in float32 with Adam(W): weights for every parameter, a
 * gradient and two moments for every trainable one. Activations are not
 * included (they are about the same in both modes and are measured).
 */
export function stateBytes(totalParams: number, trainableParams: number, bytesPerElement = 4): StateBytes {
  const weights = totalParams * bytesPerElement;
  const grads = trainableParams * bytesPerElement;
  const optimizer = 2 * trainableParams * bytesPerElement;
  return { weights, grads, optimizer, total: weights + grads + optimizer };
}

/** The expected LoRA/full ratios for a config. */
export interface Expected {
  flopsFull: StepFlops;
  flopsLora: StepFlops;
  stepRatio: number;
  paramsTotal: number;
  paramsLora: number;
  stateFull: StateBytes;
  stateLora: StateBytes;
  /** State only: weights + grads + AdamW, LoRA over full. */
  memoryRatio: number;
  /** What a step must hold (state + saved activations, see stepMemory). */
  stepMemoryFull: StepMemory;
  stepMemoryLora: StepMemory;
  /** stepMemoryLora.peak / stepMemoryFull.peak: the theory for the peak ratio. */
  peakRatio: number;
}

export function expected(c: TransformerConfig, batchSize: number, lora: LoraSpec): Expected {
  const flopsFull = stepFlops(c, batchSize);
  const flopsLora = stepFlops(c, batchSize, lora);
  const paramsTotal = paramCount(c);
  const paramsLora = loraParamCount(c, lora);
  const stateFull = stateBytes(paramsTotal, paramsTotal);
  const stateLora = stateBytes(paramsTotal + paramsLora, paramsLora);
  const stepMemoryFull = stepMemory(c, batchSize);
  const stepMemoryLora = stepMemory(c, batchSize, lora);
  return {
    flopsFull, flopsLora, stepRatio: flopsLora.total / flopsFull.total,
    paramsTotal, paramsLora, stateFull, stateLora, memoryRatio: stateLora.total / stateFull.total,
    stepMemoryFull, stepMemoryLora, peakRatio: stepMemoryLora.peak / stepMemoryFull.peak,
  };
}

/** Every linear of a block, by name: what "all-linear" targets (the head is never adapted). */
export function blockLinearNames(c: TransformerConfig): string[] {
  return blockLinears(c).map((l) => l.name);
}

/** Float32 bytes a training step must hold at its peak, by kind. */
export interface StepMemory {
  /** Weights, base and adapters. */
  weights: number;
  /** Two AdamW moments per trainable parameter. */
  optimizer: number;
  /** Gradients of the trainable parameters (counted in `state`, not in `peak`: see stepMemory). */
  gradients: number;
  /** weights + gradients + optimizer. */
  state: number;
  /** Activations the backward pass reads, alive at the end of the forward pass. */
  saved: number;
  /** Gradients in flight when backward enters the last block: the residual stream's and the MLP hidden's two. */
  working: number;
  /** weights + optimizer + saved + working: the accounting the measured peak is held against. */
  peak: number;
}

/**
 * What one training step must hold at its peak, the start of backward: the
 * weights and AdamW moments, the activations backward reads, and the first
 * gradients it makes. Parameter gradients are left out of the peak: each
 * appears while the activations behind it are freed, so few exist at the
 * start (they are in `state`, for the end of backward).
 *
 * Saved activations are counted as an autograd that keeps only what backward
 * reads (PyTorch's rule, which the engine's `reads` lists follow): a linear
 * saves its input only when its weight trains or an adapter on it needs dA; an
 * adapter saves its r-wide middle for dB; norms save their input and two
 * per-row statistics; GELU its input; the fused attention saves q, k, v, its
 * output and one log-sum-exp per row (it recomputes the probabilities in
 * backward); cross-entropy saves the logits. Integer ids and scalars are not
 * counted.
 */
export function stepMemory(c: TransformerConfig, batchSize: number, lora?: LoraSpec, bytesPerElement = 4): StepMemory {
  const T = c.blockSize;
  const N = batchSize * T;
  const C = c.nEmbd;
  const I = c.nHead * c.headDim;
  const F = c.intermediateSize;
  const full = lora === undefined;
  const adapted = (name: string): boolean => lora !== undefined && lora.targets.some((t) => name === t || name.endsWith(`.${t}`));
  const r = lora?.r ?? 0;
  let saved = 0;
  const norm = (): number => N * C + 2 * N;
  let streamNeedsGrad = full; // the embeddings train only in full mode
  for (let l = 0; l < c.nLayer; l++) {
    const x = streamNeedsGrad;
    if (x || full) saved += norm(); // input_layernorm
    const qkv = ['q_proj', 'k_proj', 'v_proj'];
    const qkvAdapted = qkv.filter(adapted);
    if (full || qkvAdapted.length > 0) saved += N * C; // the normed input, read by dW or dA
    saved += qkvAdapted.length * N * r;
    const attnNeedsGrad = full || x || qkvAdapted.length > 0;
    if (attnNeedsGrad) saved += 4 * N * I + batchSize * c.nHead * T; // q, k, v, output, log-sum-exp
    const oAdapted = adapted('o_proj');
    if (!attnNeedsGrad && (full || oAdapted)) saved += N * I; // o_proj's input when attention saved nothing
    if (oAdapted) saved += N * r;
    const x1 = attnNeedsGrad || oAdapted || x;
    if (x1 || full) saved += norm(); // post_attention_layernorm
    const mlpIn = c.mlp === 'swiglu' ? ['gate_proj', 'up_proj'] : ['up_proj'];
    const inAdapted = mlpIn.filter(adapted);
    if (full || inAdapted.length > 0) saved += N * C;
    saved += inAdapted.length * N * r;
    const hidden = full || x1 || inAdapted.length > 0;
    if (hidden) saved += (c.mlp === 'swiglu' ? 2 : 1) * N * F; // GELU's input; SwiGLU's gate and up
    const downAdapted = adapted('down_proj');
    // A plain down_proj after GELU reads GELU's input (saved above) through GELU: no tensor of its own.
    if (downAdapted || (full && c.mlp === 'swiglu')) saved += N * F; // down_proj's input
    if (downAdapted) saved += N * r;
    streamNeedsGrad = hidden || downAdapted || x1;
  }
  if (streamNeedsGrad) saved += norm(); // final norm
  if (full) saved += N * C; // lm_head's input, for dW
  saved += N * c.vocabSize; // cross-entropy reads the logits
  const total = paramCount(c);
  const adapter = lora ? loraParamCount(c, lora) : 0;
  const s = lora ? stateBytes(total + adapter, adapter, bytesPerElement) : stateBytes(total, total, bytesPerElement);
  // Gradients of the hidden width alive at the backward's peak: SwiGLU's three; GELU's one (a plain
  // down_proj's dx comes through GELU in its kernel; with an adapted one, dx's [N, F] is freed by the
  // time the peak comes: the meta backend measures it, test/bench checks within 5%).
  const hiddenGrads = c.mlp === 'swiglu' ? 3 : 1;
  const b = bytesPerElement;
  const working = (N * C + hiddenGrads * N * F) * b;
  return {
    weights: s.weights, optimizer: s.optimizer, gradients: s.grads, state: s.total,
    saved: saved * b, working, peak: s.weights + s.optimizer + saved * b + working,
  };
}
