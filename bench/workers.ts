/**
 * Parent side of the worker protocol: runs bench/w2-worker.ts in a fresh Node
 * process (so peak RSS, kernel caches and the allocator start fresh), forwards
 * its stderr as progress and parses its one `RESULT <json>` line. Also builds
 * the pre-trained base when the cache lacks it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RESULT_PREFIX, type WorkerResult } from './protocol.ts';
import { cachePaths, cachedBase, type PretrainInfo, type PretrainSpec } from './pretrain.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const WORKER = join(HERE, 'w2-worker.ts');

export interface Failed {
  error: string;
}

export function failed(x: unknown): x is Failed {
  return typeof x === 'object' && x !== null && 'error' in x;
}

export function errorOf(e: unknown): Failed {
  return { error: e instanceof Error ? e.message : String(e) };
}

/**
 * Where worker measurements run: `process` (default) spawns a fresh Node
 * process for each; `inline` calls the worker in this process (quick test
 * runs only: RSS and caches then carry over from run to run).
 */
let placement: 'process' | 'inline' = 'process';

export function setWorkerPlacement(p: 'process' | 'inline'): void {
  placement = p;
}

/** Runs bench/w2-worker.ts in a fresh Node process; its stderr is forwarded as progress (unless `quiet`). */
export async function runWorker(args: readonly string[], label: string, quiet = false): Promise<WorkerResult> {
  return runWorkerOf({}, args, label, quiet);
}

/**
 * Which lowrank a worker runs: another checkout's bench/w2-worker.ts (`root`,
 * for a before/after comparison in one session) and extra Node flags.
 */
export interface WorkerOrigin {
  root?: string;
  nodeFlags?: readonly string[];
}

export async function runWorkerOf(origin: WorkerOrigin, args: readonly string[], label: string, quiet = false): Promise<WorkerResult> {
  if (placement === 'inline' && origin.root === undefined && !origin.nodeFlags?.length) {
    const { runMode } = await import('./w2-worker.ts');
    return runMode(args, (tag, msg) => { if (!quiet) process.stderr.write(`    [${tag}] ${msg}\n`); });
  }
  return spawnWorker(args, label, quiet, origin);
}

/** Live worker processes: a suite stopped with Ctrl-C or SIGTERM takes its worker down with it. */
const children = new Set<ChildProcess>();
let signalsHooked = false;

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const c of children) c.kill(sig);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

function spawnWorker(args: readonly string[], label: string, quiet: boolean, origin: WorkerOrigin = {}): Promise<WorkerResult> {
  hookSignals();
  const root = origin.root ?? ROOT;
  const worker = origin.root === undefined ? WORKER : join(root, 'bench', 'w2-worker.ts');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...(origin.nodeFlags ?? []), '--import', 'tsx', worker, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderrTail = '';
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderrTail = (stderrTail + d).slice(-4000);
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      if (!quiet) for (const l of lines) if (l.trim()) process.stderr.write(`    ${l}\n`);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      children.delete(child);
      if (pending.trim() && !quiet) process.stderr.write(`    ${pending}\n`);
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code === 0 && line) {
        resolvePromise(JSON.parse(line.slice(RESULT_PREFIX.length)) as WorkerResult);
        return;
      }
      const why = stderrTail.trim().split('\n').filter((l) => l.startsWith('w2-worker:') || l.includes('Error')).slice(-1)[0];
      reject(new Error(`${label} worker exited with code ${code}${why ? `: ${why.replace(/^w2-worker:\s*/, '')}` : ''}`));
    });
  });
}

/** A worker run of the given result kind, or its failure (reported, not thrown). */
export async function attempt<T extends WorkerResult>(kind: T['kind'], args: readonly string[], label: string, quiet = false): Promise<T | Failed> {
  try {
    const r = await runWorker(args, label, quiet);
    if (r.kind !== kind) return { error: `${label}: expected a ${kind} result, got ${r.kind}` };
    return r as T;
  } catch (e) {
    process.stderr.write(`    ${label} failed: ${errorOf(e).error}\n`);
    return errorOf(e);
  }
}

/** The pre-trained base for `spec`: from the cache, or pre-trained now in a worker (then cached). */
export async function ensureBase(
  spec: PretrainSpec, data: string, backend: string, cacheDir: string, say: (s: string) => void,
): Promise<{ ckpt: string; info: PretrainInfo; cached: boolean }> {
  const paths = cachePaths(spec, cacheDir);
  const hit = cachedBase(spec, cacheDir);
  if (hit) return { ckpt: paths.ckpt, info: hit, cached: true };
  say(`      no cached base ${paths.key}: pre-training ${spec.steps} steps (lr ${spec.lr}, cosine), once`);
  const r = await runWorker([
    '--mode', 'pretrain', '--size', spec.size, '--backend', backend, '--data', data, '--seed', String(spec.seed),
    '--steps', String(spec.steps), '--lr', String(spec.lr), '--out', paths.ckpt, '--info', paths.info,
  ], 'pretrain');
  if (r.kind !== 'pretrain') throw new Error(`pretrain: expected a pretrain result, got ${r.kind}`);
  if (r.info.key !== paths.key) throw new Error(`pretrain: the worker built base ${r.info.key}, expected ${paths.key} (spec mismatch)`);
  return { ckpt: paths.ckpt, info: r.info, cached: false };
}
