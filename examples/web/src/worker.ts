// The training worker: owns the models and runs every step, so the page's
// main thread only draws. Steps yield to the event loop one at a time, so a
// 'stop' request is seen between steps.
import {
  GpuBackend, getBackend, getNumThreads, initBackend, listBackends, loadGpuJs, matmul, probeGpuModes, probeWebGpu, randn, registerBackend,
  setNumThreads, threadsNote, tidy,
} from '@lowrank/core';
import { CharTokenizer, type Module, type PreTrainedModel, type TransformerLM } from '@lowrank/nn';
import type { PeftModel } from '@lowrank/lora';
import type { BackendChoice, BackendInfo, BaseInfo, FromWorker, Progress, Replies, Request, RunSummary, ToWorker } from './protocol.ts';
import {
  Run, configFor, cpuPeftCopy, decodeBase, encodeBase, encodeText, generateText, hostTensorsAsync, instantiate, loadPeft, logitsOf,
  loraRun, peftFiles, pretrainRun, probeIds, tokenizerFor, type BaseModel, type PeftFiles,
} from './recipe.ts';
import { encodeHf, filesByName, generateHf, hfLogits, hfLoraRun, instantiateHf, loadHfBase, loadHfPeft, type HfBase } from './hf.ts';

const scope = self as unknown as { postMessage(m: FromWorker, transfer?: Transferable[]): void; onmessage: ((e: MessageEvent<ToWorker>) => void) | null };

let backend: BackendInfo = { name: 'cpu', mode: 'cpu' };
let base: BaseModel | null = null;
let tokenizer: CharTokenizer | null = null;
let adapter: PeftFiles | null = null;
/** Models built for generation, per backend; rebuilt when the base or adapter changes. */
let cached: { key: string; model: TransformerLM | PeftModel<TransformerLM> } | null = null;
/** A Hugging Face base (instead of `base`), its adapted model and a plain one for generation. */
let hf: HfBase | null = null;
let hfPeft: PeftModel<PreTrainedModel> | null = null;
let hfPlain: { backend: string; model: PreTrainedModel } | null = null;
let busy = false;
let stopRequested = false;

function post(m: FromWorker): void {
  scope.postMessage(m);
}

/** Resolves on the next turn of the event loop, without setTimeout's 4 ms clamp. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => resolve();
    ch.port2.postMessage(null);
  });
}

function disposeModel(m: Module): void {
  for (const p of m.parameters()) p.dispose();
}

function dropCache(): void {
  if (cached) disposeModel(cached.model);
  cached = null;
  if (hfPlain) disposeModel(hfPlain.model);
  hfPlain = null;
}

/** Holds `p` as the Hugging Face base's adapted model, freeing the one it replaces. */
function setHfPeft(p: PeftModel<PreTrainedModel> | null): void {
  if (hfPeft) disposeModel(hfPeft);
  hfPeft = p;
}

function dropHf(): void {
  setHfPeft(null);
  hf = null;
}

function hfInfo(h: HfBase): BaseInfo {
  return {
    kind: 'hf', source: `${h.name}: a Hugging Face ${h.modelType} model (kept for this visit only, not stored in the browser)`,
    parameters: h.parameters, vocabSize: h.vocabSize, blockSize: h.blockSize, nLayer: h.nLayer, nEmbd: h.hidden, vocab: [],
    modelType: h.modelType, targets: [...h.targets],
  };
}

async function plainHfModel(h: HfBase): Promise<PreTrainedModel> {
  if (hfPlain?.backend !== evalBackend()) {
    dropCache();
    hfPlain = { backend: evalBackend(), model: await instantiateHf(h, evalBackend()) };
  }
  return hfPlain.model;
}

/** The cpu backend with its thread count: several in a cross-origin-isolated page's Worker, else 1 and why. */
function cpuInfo(): BackendInfo {
  const note = threadsNote();
  return { name: 'cpu', mode: getBackend('cpu').mode, threads: getNumThreads(), ...(note ? { threadsNote: note } : {}) };
}

/** The webgpu backend, where an adapter answers; it trains, and the page reads its models back on cpu. */
async function webgpuInfo(): Promise<BackendInfo> {
  const probe = await probeWebGpu();
  if (!probe.available) throw new Error(`WebGPU is not available here: ${probe.reason}. Staying on ${backend.name}.`);
  if (!listBackends().includes('webgpu')) registerBackend('webgpu', new GpuBackend({ mode: 'webgpu', name: 'webgpu' }));
  return { name: 'webgpu', mode: getBackend('webgpu').mode, adapter: probe.adapter };
}

/** Where the page reads logits and generates: webgpu reads back only asynchronously, so its models are read on cpu. */
function evalBackend(): string {
  return backend.name === 'webgpu' ? 'cpu' : backend.name;
}

async function selectBackend(name: BackendChoice): Promise<BackendInfo> {
  if (name === 'cpu') return cpuInfo();
  if (name === 'webgpu') return webgpuInfo();
  await loadGpuJs(); // gpu.js is loaded only when the gpu backend is asked for
  const supported = probeGpuModes();
  let mode: string;
  try {
    mode = (await initBackend('gpu')).mode;
  } catch (e) {
    throw new Error(`the gpu backend could not start here: ${(e as Error).message}. Staying on cpu.`);
  }
  const info: BackendInfo = { name, mode };
  if (mode !== 'webgl2') {
    const have = Object.entries(supported).filter(([, ok]) => ok).map(([m]) => m).join(', ');
    info.fallback = `WebGL2 is not available in this browser's workers, so gpu.js runs in '${mode}' mode (supported here: ${have || 'none'}).`;
  }
  return info;
}

function baseInfo(b: BaseModel): BaseInfo {
  const params = Object.values(b.tensors).reduce((n, t) => n + t.data.length, 0);
  const tied = b.config.tieWordEmbeddings ? b.config.vocabSize * b.config.nEmbd : 0;
  return {
    kind: 'char', source: b.source, parameters: params - tied, vocabSize: b.config.vocabSize, blockSize: b.config.blockSize,
    nLayer: b.config.nLayer, nEmbd: b.config.nEmbd, vocab: [...b.vocab],
  };
}

function requireBase(): { base: BaseModel; tokenizer: CharTokenizer } {
  if (!base || !tokenizer) throw new Error('no base model yet: pre-train one, load a model file or open a Hugging Face model folder first');
  return { base, tokenizer };
}

async function drive(run: Run, phase: Progress['phase']): Promise<RunSummary> {
  stopRequested = false;
  const tokensPerStep = run.spec.batchSize * run.blockSize;
  let tokens = 0;
  let seconds = 0;
  while (!run.done && !stopRequested) {
    const r = await run.stepAsync();
    tokens += r.tokens;
    seconds += r.ms / 1000;
    post({ type: 'progress', phase, step: r.step, steps: run.spec.steps, loss: r.loss, ms: r.ms, tokensPerSecond: tokens / Math.max(seconds, 1e-9) });
    await nextTurn();
  }
  // The thread count after the run: a pool that failed to start falls back to 1 and says why.
  if (backend.name === 'cpu') backend = cpuInfo();
  return { phase, backend, losses: [...run.losses], stepMs: [...run.stepMs], stopped: !run.done, tokensPerStep };
}

async function modelFor(useAdapter: boolean): Promise<TransformerLM | PeftModel<TransformerLM>> {
  const b = requireBase().base;
  const key = `${evalBackend()}:${useAdapter && adapter ? 'adapter' : 'base'}`;
  if (cached?.key === key) return cached.model;
  dropCache();
  const model = useAdapter && adapter ? await loadPeft(b, adapter, evalBackend()) : instantiate(b, evalBackend());
  cached = { key, model };
  return model;
}

type Handler<K extends Request['type']> = (req: Extract<Request, { type: K }>) => Promise<Replies[K]> | Replies[K];

const handlers: { [K in Request['type']]: Handler<K> } = {
  async setBackend(req) {
    const next = await selectBackend(req.backend);
    if (next.name !== backend.name) {
      dropCache();
      hfPeft?.to(next.name === 'webgpu' ? 'cpu' : next.name);
    }
    backend = next;
    return backend;
  },

  async pretrain(req) {
    const tok = tokenizerFor([req.text]);
    const config = configFor(tok.vocabSize, req.spec);
    const ids = encodeText(tok, req.text, config.blockSize, false);
    const run = pretrainRun(config, ids, req.train, backend.name);
    const summary = await drive(run, 'pretrain');
    const steps = summary.losses.length;
    const next: BaseModel = {
      config, vocab: [...tok.vocab], tensors: await hostTensorsAsync(run.model),
      source: `pre-trained in this page: ${steps} steps on the built-in text, loss ${summary.losses[0]?.toFixed(3)} -> ${summary.losses[steps - 1]?.toFixed(3)}`,
    };
    disposeModel(run.model);
    dropHf();
    base = next;
    tokenizer = tok;
    adapter = null;
    dropCache();
    return { run: summary, base: baseInfo(next), baseBytes: encodeBase(next) };
  },

  loadBase(req) {
    const next = decodeBase(req.bytes, req.fileName); // throws before anything changes
    dropHf();
    base = next;
    tokenizer = new CharTokenizer(next.vocab);
    adapter = null;
    dropCache();
    return { base: baseInfo(next), baseBytes: req.bytes };
  },

  async loadPretrained(req) {
    const next = await loadHfBase(filesByName(req.files), req.name); // throws before anything changes
    dropCache();
    dropHf();
    base = null;
    tokenizer = null;
    adapter = null;
    hf = next;
    return { base: hfInfo(next) };
  },

  async finetune(req) {
    if (hf && backend.name === 'webgpu') throw new Error('a Hugging Face model fine-tunes on cpu or gpu here; webgpu runs the page\'s own models');
    if (hf) {
      const run = await hfLoraRun(hf, encodeHf(hf, req.text), req.train, req.lora.r, backend.name);
      const summary = await drive(run, 'finetune');
      const peft = run.model as PeftModel<PreTrainedModel>;
      setHfPeft(peft);
      adapter = peftFiles(peft);
      return { run: summary, adapter, trainable: peft.getNbTrainableParameters().trainable };
    }
    const { base: b, tokenizer: tok } = requireBase();
    const ids = encodeText(tok, req.text, b.config.blockSize, req.skipUnknown);
    const run = loraRun(b, ids, req.train, req.lora, backend.name);
    const summary = await drive(run, 'finetune');
    let peft = run.model as PeftModel<TransformerLM>;
    if (backend.name === 'webgpu') {
      const trained = peft;
      peft = await cpuPeftCopy(b, trained, req.lora);
      disposeModel(trained);
    }
    const files = peftFiles(peft);
    const trainable = peft.getNbTrainableParameters().trainable;
    dropCache();
    adapter = files;
    cached = { key: `${evalBackend()}:adapter`, model: peft };
    return { run: summary, adapter: files, trainable };
  },

  async loadAdapter(req) {
    if (hf) {
      const peft = await loadHfPeft(hf, req.files, evalBackend()); // throws before anything changes
      setHfPeft(peft);
      adapter = req.files;
      return { trainable: peft.getNbTrainableParameters().trainable };
    }
    const b = requireBase().base;
    const peft = await loadPeft(b, req.files, evalBackend()); // throws before anything changes
    dropCache();
    adapter = req.files;
    cached = { key: `${evalBackend()}:adapter`, model: peft };
    return { trainable: peft.getNbTrainableParameters().trainable };
  },

  async generate(req) {
    const opts = { maxNewTokens: req.maxNewTokens, temperature: req.temperature, topK: 20, seed: req.seed };
    if (hf) {
      const model = req.useAdapter && hfPeft ? hfPeft.getBaseModel() : await plainHfModel(hf);
      return { text: generateHf(model, hf, req.prompt, opts) };
    }
    const tok = requireBase().tokenizer;
    const model = await modelFor(req.useAdapter);
    const lm = 'getBaseModel' in model ? model.getBaseModel() : model;
    return { text: generateText(lm, tok, req.prompt, opts) };
  },

  async probe(req) {
    if (hf) return hfLogits(req.useAdapter && hfPeft ? hfPeft : await plainHfModel(hf), hf, req.text);
    const { base: b, tokenizer: tok } = requireBase();
    const ids = probeIds(encodeText(tok, req.text, b.config.blockSize, true), b.config.blockSize);
    return { logits: logitsOf(await modelFor(req.useAdapter), ids, b.config.blockSize), ids };
  },

  async poolCheck(req) {
    const threads = getNumThreads();
    const a = randn([req.n, req.n], { backend: 'cpu' });
    const b = randn([req.n, req.n], { backend: 'cpu' });
    const timed = (): { bits: Float32Array; ms: number } => tidy(() => {
      const t0 = performance.now();
      const bits = Float32Array.from(matmul(a, b).dataSync());
      return { bits, ms: performance.now() - t0 };
    });
    try {
      // Nested Workers boot only while this Worker's event loop turns: the pool's first calls run
      // (correctly) on this thread alone, so time the best of a few calls with pauses between.
      let many = timed();
      for (let i = 0; i < 4; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        const t = timed();
        if (t.ms < many.ms) many = t;
      }
      setNumThreads(1);
      const one = timed();
      const sameBits = many.bits.length === one.bits.length && many.bits.every((v, i) => Object.is(v, one.bits[i]));
      return { threads, sameBits, msThreads: many.ms, msOne: one.ms };
    } finally {
      setNumThreads(threads);
      a.dispose();
      b.dispose();
    }
  },

  stop() {
    stopRequested = true;
    return { stopping: busy };
  },
};

async function handle(msg: ToWorker): Promise<void> {
  const exclusive = msg.type !== 'stop';
  if (exclusive && busy) {
    post({ type: 'reply', id: msg.id, ok: false, error: 'busy: wait for the current run to finish (or stop it)' });
    return;
  }
  if (exclusive) busy = true;
  try {
    const handler = handlers[msg.type] as (r: Request) => Promise<unknown> | unknown;
    const value = await handler(msg);
    post({ type: 'reply', id: msg.id, ok: true, value });
  } catch (e) {
    post({ type: 'reply', id: msg.id, ok: false, error: (e as Error).message ?? String(e) });
  } finally {
    if (exclusive) busy = false;
  }
}

scope.onmessage = (e) => {
  void handle(e.data);
};
