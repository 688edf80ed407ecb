// The page: controls, the loss plot and storage. All the numbers are computed
// in the worker (worker.ts); this thread only sends requests and draws.
import type { BackendChoice, BackendInfo, BaseInfo, FromWorker, Progress, Replies, Request, RequestType, RunSummary } from './protocol.ts';
import { pageLora, pretrainText } from './page-spec.ts';
import type { PeftFiles } from './recipe.ts';
import { drawLoss, type Series } from './plot.ts';
import * as store from './store.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page: no element #${id}`);
  return el as T;
};
const num = (id: string): number => Number($<HTMLInputElement>(id).value);

// ---- worker RPC ----------------------------------------------------------

const worker = new Worker('/dist/worker.js', { type: 'module' });
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
let nextId = 1;
let onProgress: (p: Progress) => void = () => {};

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  if (m.type === 'progress') onProgress(m);
  else if (m.type === 'log') console.log(m.message);
  else {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (!p) return;
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error));
  }
};
worker.onerror = (e) => showError(`the training worker failed: ${e.message}`);

function call<K extends RequestType>(req: Extract<Request, { type: K }>, transfer: Transferable[] = []): Promise<Replies[K]> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    worker.postMessage({ ...req, id }, transfer);
  });
}

// ---- messages and state ----------------------------------------------------

function showError(text: string): void {
  const el = $('message');
  el.textContent = text;
  el.className = '';
  el.hidden = false;
}

function showOk(text: string): void {
  const el = $('message');
  el.textContent = text;
  el.className = 'ok';
  el.hidden = false;
}

function clearMessage(): void {
  $('message').hidden = true;
}

/** Friendlier wording for the errors a user can fix. */
function explain(e: unknown): string {
  const msg = (e as Error).message ?? String(e);
  if (/unknown character/.test(msg)) {
    return `${msg.replace(/ \(use \{ unknown: 'skip' \} to drop it\)/, '')}.\nTick "drop characters the base model does not know", or edit the text.`;
  }
  return msg;
}

interface PageState {
  base: BaseInfo | null;
  adapter: PeftFiles | null;
  backend: BackendInfo;
  busy: boolean;
  runs: Partial<Record<string, RunSummary>>;
}

const state: PageState = { base: null, adapter: null, backend: { name: 'cpu', mode: 'cpu' }, busy: false, runs: {} };
const series: Series[] = [];
let plotSteps = 0;

function setBusy(busy: boolean, label = ''): void {
  state.busy = busy;
  document.body.dataset.state = busy ? 'busy' : 'idle';
  $('status').textContent = busy ? label : 'ready';
  for (const id of ['pretrain', 'base-file', 'hf-dir', 'backend', 'builtin-text']) $<HTMLButtonElement>(id).disabled = busy;
  $<HTMLButtonElement>('stop').disabled = !busy;
  $<HTMLButtonElement>('finetune').disabled = busy || !state.base;
  $<HTMLButtonElement>('generate').disabled = busy || !state.base;
  $<HTMLButtonElement>('download-base').disabled = busy || state.base?.kind !== 'char';
  $<HTMLButtonElement>('download-config').disabled = busy || !state.adapter;
  $<HTMLButtonElement>('download-weights').disabled = busy || !state.adapter;
}

let actionsDone = 0;

/** Runs one user action: busy while it runs, its error shown; body[data-actions] counts finished ones. */
async function guarded(label: string, fn: () => Promise<void>): Promise<void> {
  if (state.busy) return;
  clearMessage();
  setBusy(true, label);
  try {
    await fn();
  } catch (e) {
    showError(explain(e));
  } finally {
    setBusy(false);
    document.body.dataset.actions = String(++actionsDone);
  }
}

async function persist(key: string, value: unknown): Promise<void> {
  try {
    if (value === null) await store.remove(key);
    else await store.save(key, value);
  } catch (e) {
    showError(`could not save ${key} in this browser's storage (it will be lost on reload): ${(e as Error).message}`);
  }
}

// ---- base model ------------------------------------------------------------

function showBase(b: BaseInfo | null): void {
  state.base = b;
  const params = b ? `${b.parameters.toLocaleString('en-US')} parameters` : '';
  $('base-info').textContent = !b
    ? 'No base model yet.'
    : b.kind === 'hf'
      ? `${params}: ${b.modelType}, ${b.nLayer} layers, hidden ${b.nEmbd}, vocabulary ${b.vocabSize.toLocaleString('en-US')} tokens; LoRA on ${b.targets?.join(', ')}, windows of ${b.blockSize} tokens. ${b.source}`
      : `${params}: ${b.nLayer} layers, width ${b.nEmbd}, context ${b.blockSize}, ${b.vocabSize} characters. ${b.source}`;
  updateTextInfo();
}

function showAdapter(files: PeftFiles | null, trainable?: number): void {
  state.adapter = files;
  $('adapter-info').textContent = files
    ? `${trainable !== undefined ? `${trainable.toLocaleString('en-US')} trainable parameters; ` : ''}adapter_config.json ${files.config.length} B, adapter_model.safetensors ${(files.weights.length / 1024).toFixed(1)} KiB`
    : 'No adapter yet.';
}

async function builtinText(which: 'base' | 'tune'): Promise<string> {
  const res = await fetch(`/builtin/${which}.txt`);
  if (!res.ok) throw new Error(`could not fetch the built-in ${which} text: HTTP ${res.status}`);
  return res.text();
}

async function pretrain(): Promise<void> {
  const text = await builtinText('base');
  const sample = await builtinText('tune');
  startPlot(num('pretrain-steps'));
  const s = addSeries(`pre-train (${state.backend.mode})`, '#8a93a6');
  onProgress = (p) => progressed(p, s);
  const out = await call({
    type: 'pretrain', text: pretrainText(text, sample),
    spec: { nLayer: num('n-layer'), nHead: num('n-head'), nEmbd: num('n-embd'), blockSize: num('block-size') },
    train: { steps: num('pretrain-steps'), batchSize: num('batch-size'), lr: 3e-3, seed: num('seed') },
  });
  state.runs.pretrain = out.run;
  showBase(out.base);
  showAdapter(null);
  await persist('base', out.baseBytes);
  await persist('adapter', null);
  showOk(summary(out.run));
}

async function loadBaseFile(file: File): Promise<void> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const out = await call({ type: 'loadBase', bytes, fileName: file.name });
  showBase(out.base);
  showAdapter(null);
  await persist('base', out.baseBytes);
  await persist('adapter', null);
  showOk(`loaded ${file.name}`);
}

/** The files a model needs (configs, tokenizer, safetensors); other weights (.bin, .onnx, .gguf) are not read. */
const MODEL_FILE = /\.(json|safetensors)$/;

async function loadHfFolder(list: readonly File[]): Promise<void> {
  const picked = list.filter((f) => MODEL_FILE.test(f.name));
  const folder = list[0]?.webkitRelativePath.split('/')[0] || 'the picked files';
  const files: [string, Uint8Array][] = [];
  for (const f of picked) files.push([f.webkitRelativePath || f.name, new Uint8Array(await f.arrayBuffer())]);
  // Transferred, not copied: a model's weights may be hundreds of MB.
  const out = await call({ type: 'loadPretrained', files, name: folder }, files.map(([, b]) => b.buffer as ArrayBuffer));
  showBase(out.base);
  showAdapter(null);
  await persist('base', null);
  await persist('adapter', null);
  showOk(`opened ${folder} (${picked.length} files)`);
}

// ---- text --------------------------------------------------------------------

function updateTextInfo(): void {
  const text = $<HTMLTextAreaElement>('text').value;
  let info = `${[...text].length.toLocaleString('en-US')} characters`;
  if (state.base?.kind === 'char') {
    const known = new Set(state.base.vocab);
    const unknown = [...new Set(text)].filter((c) => !known.has(c));
    if (unknown.length) {
      const shown = unknown.slice(0, 8).map((c) => JSON.stringify(c)).join(' ');
      info += `; ${unknown.length} the base model does not know: ${shown}${unknown.length > 8 ? ' ...' : ''}`;
    }
  }
  $('text-info').textContent = info;
}

let textSaveTimer: ReturnType<typeof setTimeout> | undefined;
function textChanged(): void {
  updateTextInfo();
  clearTimeout(textSaveTimer);
  textSaveTimer = setTimeout(() => void persist('text', $<HTMLTextAreaElement>('text').value), 300);
}

function setText(text: string): void {
  $<HTMLTextAreaElement>('text').value = text;
  textChanged();
}

// ---- fine-tuning -------------------------------------------------------------

function startPlot(steps: number): void {
  series.length = 0;
  plotSteps = steps;
  $<HTMLProgressElement>('progress').value = 0;
  redraw();
}

function addSeries(label: string, color: string): Series {
  const s: Series = { label, color, values: [] };
  series.push(s);
  return s;
}

function redraw(): void {
  drawLoss($<HTMLCanvasElement>('plot'), series, plotSteps);
}

function progressed(p: Progress, s: Series): void {
  s.values.push(p.loss);
  $<HTMLProgressElement>('progress').value = p.step / p.steps;
  $('stats').textContent =
    `${p.phase} step ${p.step}/${p.steps} | loss ${p.loss.toFixed(4)} | ${Math.round(p.tokensPerSecond).toLocaleString('en-US')} tok/s | ${p.ms.toFixed(1)} ms/step`;
  redraw();
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

function summary(run: RunSummary): string {
  const n = run.losses.length;
  const ms = median(run.stepMs.slice(1));
  return `${run.phase === 'pretrain' ? 'pre-training' : 'LoRA fine-tuning'} on ${run.backend.mode}: ${n} steps${run.stopped ? ' (stopped)' : ''}, ` +
    `loss ${run.losses[0]?.toFixed(3)} -> ${run.losses[n - 1]?.toFixed(3)}, median ${Number.isFinite(ms) ? ms.toFixed(1) : '?'} ms/step after the first ` +
    `(${Number.isFinite(ms) ? Math.round((run.tokensPerStep * 1000) / ms).toLocaleString('en-US') : '?'} tok/s)`;
}

async function finetune(): Promise<void> {
  const steps = num('tune-steps');
  startPlot(steps);
  const colors: Record<BackendChoice, string> = { cpu: '#3b6fd4', gpu: '#d4573b', webgpu: '#2f9e62' };
  const s = addSeries(`LoRA (${state.backend.mode})`, colors[state.backend.name]);
  onProgress = (p) => progressed(p, s);
  const out = await call({
    type: 'finetune', text: $<HTMLTextAreaElement>('text').value, skipUnknown: $<HTMLInputElement>('skip-unknown').checked,
    train: { steps, batchSize: num('batch-size'), lr: num('lr'), seed: num('seed') },
    lora: pageLora(num('rank')),
  });
  state.runs[`finetune-${out.run.backend.name}`] = out.run;
  state.runs.finetune = out.run;
  showAdapter(out.adapter, out.trainable);
  await persist('adapter', out.adapter);
  showOk(summary(out.run));
}

async function setBackend(choice: BackendChoice): Promise<void> {
  try {
    state.backend = await call({ type: 'setBackend', backend: choice });
  } catch (e) {
    $<HTMLSelectElement>('backend').value = state.backend.name;
    throw e;
  }
  const b = state.backend;
  $('backend-mode').textContent = b.name === 'cpu' ? `cpu, ${b.threads ?? 1} thread${b.threads === 1 ? '' : 's'}` : `gpu.js mode: ${b.mode}`;
  const note = $('backend-note');
  const webgpu = b.name === 'webgpu'
    ? `WebGPU adapter: ${b.adapter ?? 'unnamed'}. Training runs on WebGPU; logits and generation read the adapter on cpu.`
    : '';
  const text = b.fallback ?? (b.threadsNote ? `The cpu backend runs on one thread here: ${b.threadsNote}.` : webgpu);
  note.hidden = !text;
  note.textContent = text;
}

async function generate(): Promise<void> {
  const out = await call({
    type: 'generate', prompt: $<HTMLInputElement>('prompt').value, maxNewTokens: num('gen-tokens'),
    temperature: num('temperature'), seed: num('seed'), useAdapter: $<HTMLInputElement>('use-adapter').checked && !!state.adapter,
  });
  $('generated').textContent = $<HTMLInputElement>('prompt').value + out.text;
}

function download(name: string, bytes: Uint8Array, type: string): void {
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---- wiring ------------------------------------------------------------------

function wire(): void {
  $('pretrain').onclick = () => void guarded('pre-training...', pretrain);
  $('finetune').onclick = () => void guarded('fine-tuning...', finetune);
  $('generate').onclick = () => void guarded('generating...', generate);
  $('stop').onclick = () => void call({ type: 'stop' });
  $<HTMLSelectElement>('backend').onchange = (e) =>
    void guarded('starting the backend...', () => setBackend((e.target as HTMLSelectElement).value as BackendChoice));
  $<HTMLInputElement>('base-file').onchange = (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (file) void guarded(`loading ${file.name}...`, () => loadBaseFile(file));
    (e.target as HTMLInputElement).value = '';
  };
  $<HTMLInputElement>('hf-dir').onchange = (e) => {
    const files = Array.from((e.target as HTMLInputElement).files ?? []);
    if (files.length) void guarded('opening the model...', () => loadHfFolder(files));
    (e.target as HTMLInputElement).value = '';
  };
  $('builtin-text').onclick = () => void guarded('fetching...', async () => setText(await builtinText('tune')));
  $('download-base').onclick = () => void store.load<Uint8Array>('base').then((b) => {
    if (b) download('base-model.safetensors', b, 'application/octet-stream');
    else showError('the base model is not in this browser\'s storage');
  });
  $('download-config').onclick = () => state.adapter && download('adapter_config.json', state.adapter.config, 'application/json');
  $('download-weights').onclick = () => state.adapter && download('adapter_model.safetensors', state.adapter.weights, 'application/octet-stream');
  const area = $<HTMLTextAreaElement>('text');
  area.oninput = textChanged;
  area.ondragover = (e) => {
    e.preventDefault();
    area.classList.add('dragover');
  };
  area.ondragleave = () => area.classList.remove('dragover');
  area.ondrop = (e) => {
    e.preventDefault();
    area.classList.remove('dragover');
    const file = e.dataTransfer?.files[0];
    if (!file) return;
    if (file.name.endsWith('.safetensors')) void guarded(`loading ${file.name}...`, () => loadBaseFile(file));
    else void guarded(`reading ${file.name}...`, async () => setText(await file.text()));
  };
}

/** Brings back what the last visit saved; a saved item that no longer loads is reported and dropped. */
async function restore(): Promise<string[]> {
  const restored: string[] = [];
  let text: string | undefined;
  try {
    text = await store.load<string>('text');
  } catch (e) {
    showError(`this browser's storage is not available; nothing will be kept on reload (${(e as Error).message})`);
  }
  if (text !== undefined) restored.push('text');
  setText(text ?? (await builtinText('tune')));
  const baseBytes = await store.load<Uint8Array>('base').catch(() => undefined);
  if (baseBytes) {
    try {
      showBase((await call({ type: 'loadBase', bytes: baseBytes, fileName: 'the saved base model' })).base);
      restored.push('base model');
      const adapter = await store.load<PeftFiles>('adapter').catch(() => undefined);
      if (adapter) {
        showAdapter(adapter, (await call({ type: 'loadAdapter', files: adapter })).trainable);
        restored.push('adapter');
      }
    } catch (e) {
      showError(`the saved model could not be restored: ${(e as Error).message}`);
    }
  }
  return restored;
}

/** Offers webgpu only where an adapter answers (WebGPU needs a secure context; not every browser has it). */
async function offerWebGpu(): Promise<void> {
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  const answered = gpu ? await gpu.requestAdapter().then((a) => a !== null, () => false) : false;
  const option = document.querySelector<HTMLOptionElement>('#backend option[value=webgpu]');
  if (!option) return;
  option.disabled = !answered;
  if (!answered) option.textContent += ' - not available in this browser';
}

async function start(): Promise<void> {
  wire();
  void offerWebGpu();
  redraw();
  setBusy(true, 'restoring...');
  try {
    await setBackend('cpu').catch((e: unknown) => showError(explain(e)));
    const restored = await restore();
    if (restored.length) showOk(`restored from your last visit: ${restored.join(', ')}`);
  } finally {
    setBusy(false);
  }
}

/** For the browser test and the curious: the worker RPC and the last runs. */
Object.assign(window, { lowrank: { call, state } });

void start();
