/**
 * The `lowrank` command:
 *
 *   lowrank finetune --model <dir|id> --data <file.txt|file.jsonl> --r 8 --alpha 16 --targets q_proj,v_proj --steps N --out <dir>
 *   lowrank generate --model <dir|id> [--adapter <dir>] --prompt <text>
 *   lowrank merge --model <dir|id> --adapter <dir> --out <dir>
 *   lowrank inspect <dir>
 */
import { closest, helpText, parseArgs, UsageError, type CommandSpec, type FlagValue } from './args.ts';
import { finetune, finetuneSpec } from './finetune.ts';
import { generateCommand, generateSpec } from './generate.ts';
import { inspectCommand, inspectSpec } from './inspect.ts';
import type { Io } from './load.ts';
import { mergeCommand, mergeSpec } from './merge.ts';

export type { Io } from './load.ts';
export { finetune, generateCommand, inspectCommand, mergeCommand };

interface Command {
  spec: CommandSpec;
  run(flags: Record<string, FlagValue>, positionals: string[], io: Io): Promise<unknown>;
}

export const commands: Readonly<Record<string, Command>> = {
  finetune: { spec: finetuneSpec, run: (f, _p, io) => finetune(f, io) },
  generate: { spec: generateSpec, run: (f, _p, io) => generateCommand(f, io) },
  merge: { spec: mergeSpec, run: (f, _p, io) => mergeCommand(f, io) },
  inspect: { spec: inspectSpec, run: (f, p, io) => inspectCommand(f, p, io) },
};

/** The top-level help. */
export function usage(): string {
  const rows = Object.values(commands).map((c) => `  ${c.spec.name.padEnd(10)}${c.spec.summary}`);
  return [
    'lowrank: LoRA fine-tuning of Hugging Face models in TypeScript',
    '',
    'usage: lowrank <command> [flags]    (lowrank <command> --help for its flags)',
    '',
    ...rows,
    '',
    'Models: a directory, an http(s) URL, or a Hub id org/name (cached in $HF_HOME/hub; HF_HUB_OFFLINE=1 reads the cache only).',
  ].join('\n');
}

const defaultIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  progress: true,
};

/**
 * Runs one command line; returns the exit code (0 ok, 1 failed, 2 bad usage).
 *
 * @example process.exitCode = await run(['inspect', 'models/gpt2'])
 */
export async function run(argv: readonly string[], io: Io = defaultIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === 'help' || name === '-h') {
    io.out(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    const near = closest(name, Object.keys(commands));
    io.err(`lowrank: unknown command '${name}'${near ? ` (did you mean '${near}'?)` : ''}; commands: ${Object.keys(commands).join(', ')}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(helpText(command.spec));
    return 0;
  }
  try {
    const { flags, positionals } = parseArgs(command.spec, rest);
    await command.run(flags, positionals, io);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${err.message}\n(see: lowrank ${name} --help)`);
      return 2;
    }
    const e = err as Error;
    io.err(`lowrank ${name}: ${process.env.LOWRANK_DEBUG ? (e.stack ?? e.message) : e.message}`);
    return 1;
  }
}
