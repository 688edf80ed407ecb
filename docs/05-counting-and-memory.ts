// Tutorial 5: counting parameters and memory. Run: node --import tsx docs/05-counting-and-memory.ts
// Everything here runs on the shapes-only `meta` backend: no weights are allocated.
// The page docs/05-counting-and-memory.md quotes the #region blocks below (npm run docs:sync).
import { memory, randint, resetPeak, tidy } from '@lowrank/core';
import { TransformerLM, gpt2Small, llama7b } from '@lowrank/nn';
import {
  estimateMemory, formatBytes, getPeftModel, renderMemoryTable, renderSavingsTable, savingsTable, type TargetModules,
} from '@lowrank/lora';
import { runIfMain, type TutorialOptions } from './cli.ts';

/** What the tutorial shows, checked by test/docs/tutorials.test.ts. */
export interface Claims {
  gpt2Line: string;
  gpt2Savings: { fullParams: number; loraParams: number; rows: number };
  llama: {
    full: { trainable: number; total: number; totalBytes: number; activations: number };
    lora: { trainable: number; total: number; totalBytes: number; activations: number };
  };
  /** Trainable LoRA parameters of llama-7b by target set and rank. */
  sweep: { targets: string; r: number; params: number }[];
  /** Bytes a LoRA training step of gpt2-small adds on top of the weights, without and with gradient checkpointing. */
  stepBytes: { plain: number; checkpointed: number };
}

export async function main(opts: TutorialOptions): Promise<Claims> {
  const log = opts.log ?? console.log;

  // #region gpt2
  const gpt2 = new TransformerLM(gpt2Small(), { backend: 'meta' }); // 124M parameters, no memory
  const peft = getPeftModel(gpt2, { r: 8, targetModules: ['q_proj', 'v_proj'] });
  const gpt2Line = peft.printTrainableParameters(log);
  // #endregion

  // #region savings
  const table = savingsTable(new TransformerLM(gpt2Small(), { backend: 'meta' }), { r: 8, targetModules: ['q_proj', 'v_proj'] });
  log(renderSavingsTable({ rows: table.rows.slice(0, 4), totals: table.totals })); // first rows + the total
  log(`... ${table.rows.length} adapted layers in all`);
  // #endregion

  // #region llama
  const lora = { r: 8, loraAlpha: 16, targetModules: ['q_proj', 'v_proj'] };
  const workload = { batch: 1, seq: 512 };
  const full = estimateMemory('llama-7b', null, { mode: 'full', ...workload });
  const adapted = estimateMemory('llama-7b', lora, { mode: 'lora', ...workload });
  log(renderMemoryTable([full, adapted]));
  // #endregion

  // #region sweep
  const llama = new TransformerLM(llama7b(), { backend: 'meta' });
  const targetSets: [string, TargetModules][] = [
    ['q,v', ['q_proj', 'v_proj']],
    ['q,k,v,o', ['q_proj', 'k_proj', 'v_proj', 'o_proj']],
    ['all-linear', 'all-linear'],
  ];
  const ranks = [1, 4, 8, 16, 64];
  const sweep: Claims['sweep'] = [];
  log(`${'targets'.padEnd(11)}${ranks.map((r) => `r=${r}`.padStart(22)).join('')}`);
  for (const [label, targetModules] of targetSets) {
    const cells = ranks.map((r) => {
      const params = savingsTable(llama, { r, targetModules }).totals.loraParams;
      sweep.push({ targets: label, r, params });
      // adapter file (4 B) + gradients (4 B) + AdamW m, v (8 B) per parameter
      return `${(params / 1e6).toFixed(2)}M ${formatBytes(16 * params)}`.padStart(22);
    });
    log(`${label.padEnd(11)}${cells.join('')}`);
  }
  // #endregion

  // #region checkpointing
  const stepBytes = (checkpointed: boolean): number => tidy(() => {
    const model = new TransformerLM(gpt2Small(), { backend: 'meta' });
    if (checkpointed) model.gradientCheckpointingEnable(); // recompute each block in backward
    const adapted = getPeftModel(model, lora);
    const ids = randint(0, 50257, [1, 512], { backend: 'meta' });
    resetPeak('meta');
    const before = memory('meta').liveBytes;
    adapted.forward(ids, { targets: ids }).loss!.backward();
    return memory('meta').peakBytes - before; // activations + adapter gradients, at their peak
  });
  const plain = stepBytes(false);
  const checkpointed = stepBytes(true);
  log(`gpt2-small LoRA step, batch 1 x 512: ${formatBytes(plain)} on top of the weights; ` +
    `${formatBytes(checkpointed)} with gradient checkpointing`);
  // #endregion

  const pick = (e: typeof full) => ({ trainable: e.trainableParams, total: e.totalParams, totalBytes: e.total, activations: e.activations });
  return {
    gpt2Line,
    gpt2Savings: { fullParams: table.totals.fullParams, loraParams: table.totals.loraParams, rows: table.rows.length },
    llama: { full: pick(full), lora: pick(adapted) },
    sweep,
    stepBytes: { plain, checkpointed },
  };
}

await runIfMain(import.meta.url, main);
