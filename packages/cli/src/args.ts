/** Flags of one command: `--name value`, `--name=value`, `--switch`; unknown names are errors with a suggestion. */

export type FlagType = 'string' | 'int' | 'number' | 'list' | 'bool';

export interface FlagSpec {
  type: FlagType;
  help: string;
  default?: string | number | boolean | readonly string[];
  required?: boolean;
  /** Shown in help after the flag (`--model <dir|id>`). */
  value?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** `<dir>`-style positional arguments, in order. */
  positionals?: readonly { name: string; help: string }[];
  flags: Readonly<Record<string, FlagSpec>>;
  examples?: readonly string[];
}

export type FlagValue = string | number | boolean | string[];

/** A wrong command line: printed with a pointer to --help, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

// Names people bring from transformers' Trainer, PEFT and other CLIs.
const FAMILIAR: Readonly<Record<string, string>> = {
  lora_alpha: 'alpha',
  'lora-alpha': 'alpha',
  lora_r: 'r',
  rank: 'r',
  target_modules: 'targets',
  'target-modules': 'targets',
  max_steps: 'steps',
  'max-steps': 'steps',
  output_dir: 'out',
  'output-dir': 'out',
  output: 'out',
  learning_rate: 'lr',
  'learning-rate': 'lr',
  model_name_or_path: 'model',
  'model-name-or-path': 'model',
  max_new_tokens: 'max-new-tokens',
  per_device_train_batch_size: 'batch-size',
  lora_dropout: 'dropout',
  'lora-dropout': 'dropout',
  adapter_path: 'adapter',
};

/**
 * Parses `argv` for `spec`: defaults filled, types checked, required flags present.
 *
 * @example parseArgs(spec, ['--r', '8', 'dir']) // { flags: { r: 8, ... }, positionals: ['dir'] }
 */
export function parseArgs(spec: CommandSpec, argv: readonly string[]): { flags: Record<string, FlagValue>; positionals: string[] } {
  const flags: Record<string, FlagValue> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--') || arg === '--') {
      if (arg.startsWith('-') && arg !== '-' && arg !== '--') {
        throw new UsageError(`lowrank ${spec.name}: short option ${arg} is not supported; use the --long names (see --help)`);
      }
      if (arg !== '--') positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const f = spec.flags[name];
    if (!f) throw new UsageError(unknownFlag(spec, name));
    let raw: string;
    if (f.type === 'bool') {
      raw = eq >= 0 ? arg.slice(eq + 1) : 'true';
    } else if (eq >= 0) {
      raw = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new UsageError(`lowrank ${spec.name}: --${name} needs a value${f.value ? ` ${f.value}` : ''}`);
      }
      raw = next;
      i++;
    }
    if (name in flags) throw new UsageError(`lowrank ${spec.name}: --${name} given twice`);
    flags[name] = convert(spec.name, name, f, raw);
  }
  for (const [name, f] of Object.entries(spec.flags)) {
    if (name in flags) continue;
    if (f.required) throw new UsageError(`lowrank ${spec.name}: --${name}${f.value ? ` ${f.value}` : ''} is required (${f.help})`);
    if (f.default !== undefined) flags[name] = Array.isArray(f.default) ? [...f.default] : (f.default as FlagValue);
  }
  const expected = spec.positionals ?? [];
  if (positionals.length > expected.length) {
    const extra = positionals[expected.length];
    throw new UsageError(`lowrank ${spec.name}: unexpected argument ${JSON.stringify(extra)}` + (expected.length === 0 ? ' (this command takes only --flags)' : ''));
  }
  if (positionals.length < expected.length) {
    const missing = expected[positionals.length];
    throw new UsageError(`lowrank ${spec.name}: missing <${missing.name}> (${missing.help})`);
  }
  return { flags, positionals };
}

function convert(command: string, name: string, f: FlagSpec, raw: string): FlagValue {
  const bad = (want: string) => new UsageError(`lowrank ${command}: --${name} must be ${want}, got ${JSON.stringify(raw)}`);
  switch (f.type) {
    case 'string':
      if (raw === '') throw bad('a non-empty string');
      return raw;
    case 'int': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isInteger(n)) throw bad('an integer');
      return n;
    }
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw bad('a number');
      return n;
    }
    case 'list': {
      const items = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
      if (items.length === 0) throw bad('a comma-separated list');
      return items;
    }
    case 'bool':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw bad('true or false');
  }
}

function unknownFlag(spec: CommandSpec, name: string): string {
  const known = Object.keys(spec.flags);
  const familiar = FAMILIAR[name];
  const near = familiar && known.includes(familiar) ? familiar : closest(name, known);
  const hint = near ? ` (did you mean --${near}?)` : '';
  return `lowrank ${spec.name}: unknown flag --${name}${hint}; flags: ${known.map((k) => `--${k}`).join(' ')}`;
}

/**
 * The candidate within a small edit distance of `name` (snake_case and case folded), if any.
 *
 * @example closest('setps', ['steps', 'out']) // 'steps'
 */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  const fold = (s: string) => s.replace(/[-_]/g, '').toLowerCase();
  const exact = candidates.find((c) => fold(c) === fold(name));
  if (exact) return exact;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(fold(name), fold(c));
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

// Edits and adjacent swaps ('setps' -> 'steps' is one), as optimal string alignment.
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The --help text of a command. */
export function helpText(spec: CommandSpec): string {
  const pos = (spec.positionals ?? []).map((p) => ` <${p.name}>`).join('');
  const lines = [`lowrank ${spec.name}${pos} [flags]`, '', `  ${spec.summary}`, ''];
  for (const p of spec.positionals ?? []) lines.push(`  <${p.name}>`.padEnd(30) + p.help);
  const rows = Object.entries(spec.flags).map(([name, f]) => {
    const left = `  --${name}${f.value ? ` ${f.value}` : ''}`;
    const def = f.required ? ' (required)' : f.default !== undefined ? ` (default ${Array.isArray(f.default) ? f.default.join(',') : String(f.default)})` : '';
    return `${left.padEnd(30)}${f.help}${def}`;
  });
  lines.push(...rows);
  if (spec.examples?.length) lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return lines.join('\n');
}
