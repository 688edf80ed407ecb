// Saved in a loop by a child process that crash.test.ts kills with SIGKILL at random times.
// argv: format (peft | native | checkpoint), dir, first generation, and optionally how many saves
// to make before exiting (default: until killed). Generation g writes every
// lora_B (or every parameter) as g, and loraAlpha 8 for even g, 16 for odd g; prints `saved g`.
import '@lowrank/core/node';
import { constant_, TransformerLM, gptTiny } from '@lowrank/nn';
import { saveCheckpoint } from '@lowrank/nn/node';
import { getPeftModel } from '@lowrank/lora';
import { saveAdapter, savePretrained } from '@lowrank/lora/node';
import { noGrad } from '@lowrank/core';
import path from 'node:path';

export const alphaOf = (g: number): number => (g % 2 === 0 ? 8 : 16);

const [format, dir, first, count] = process.argv.slice(2);
const last = count === undefined ? Infinity : Number(first) + Number(count) - 1;
const model = new TransformerLM(gptTiny());
const peft = getPeftModel(model, { r: 8, loraAlpha: 8, targetModules: ['q_proj', 'v_proj', 'up_proj', 'down_proj'] });
process.stdout.write('ready\n');
for (let g = Number(first); g <= last; g++) {
  noGrad(() => {
    if (format === 'checkpoint') for (const p of model.parameters()) constant_(p, g);
    else for (const [, l] of peft.baseModel.loraLayers()) constant_(l.loraB.get('default').weight, g);
  });
  peft.peftConfig.default = peft.peftConfig.default.with({ loraAlpha: alphaOf(g) });
  if (format === 'peft') await savePretrained(peft, dir);
  else if (format === 'native') await saveAdapter(peft, dir);
  else await saveCheckpoint(path.join(dir, 'ckpt.msgpack'), { model, step: g });
  process.stdout.write(`saved ${g}\n`);
}
