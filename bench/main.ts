/**
 * `npm run bench -- <suite> [args]`: runs one benchmark suite; with no suite,
 * the first entry of the table below. Each suite module exports `run(args)`.
 *
 *   lora     (default) W2 full vs LoRA, W3 latency, report + chart in bench/results/<timestamp>/
 *   quality  full fine-tuning vs LoRA at several ranks from one pre-trained base: validation loss, time, memory
 *   matmul   W1: square matmul GFLOP/s per backend
 *   kernels  Benchmark.js micro-benchmarks at W2 shapes per backend / gpu.js mode
 *   gpu      per W2 LoRA step: gpu.js dispatches, compiles (also at a new sequence length), uploads, device bytes, time
 *   peers    our W2 step vs TensorFlow.js's and PyTorch's, alternating runs (needs the peer folders)
 *   memory   LoRA on a float32 vs a 16-bit base vs full fine-tuning: tensor bytes and RSS
 *   profile  wall time per kernel of one W2 step (full and LoRA)
 *   pretrained  a 124M GPT-2 in the Hub layout: fromPretrained time/RSS, LoRA (c_attn) vs full step at 4 x 128
 */
export interface BenchSuite {
  run(args: string[]): unknown;
}

/** Suite name -> module. Add suites here; the first entry is the default. */
export const suites: Record<string, () => Promise<BenchSuite>> = {
  lora: () => import('./lora-suite.ts'),
  quality: () => import('./quality-suite.ts'),
  matmul: () => import('./matmul.ts'),
  kernels: () => import('./kernels.ts'),
  gpu: () => import('./gpu.ts'),
  peers: () => import('./peers.ts'),
  pretrained: () => import('./pretrained.ts'),
  memory: () => import('./memory.ts'),
  profile: () => import('./profile.ts'),
};

async function main(argv: string[]): Promise<void> {
  const names = Object.keys(suites);
  const [first, ...rest] = argv;
  const named = first !== undefined && !first.startsWith('-');
  const name = named ? first : names[0];
  const args = named ? rest : argv;
  if (name === 'help' || name === '--help') {
    console.log(`usage: npm run bench -- [${names.join(' | ')}] [options]  (default: ${names[0]})`);
    return;
  }
  const load = suites[name];
  if (!load) {
    console.error(`bench: unknown suite '${name}' (known: ${names.join(', ')})`);
    process.exitCode = 2;
    return;
  }
  const suite = await load();
  await suite.run(args);
}

await main(process.argv.slice(2));
