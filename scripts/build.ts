// npm run build: compiles every package under packages/ to ESM JavaScript + .d.ts
// in packages/<pkg>/dist, dependencies first (a package's @lowrank/* imports
// resolve to the dist of the packages it depends on). Options: tsconfig.build.json.
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface WorkspacePackage {
  name: string;
  dir: string;
  /** Names of the workspace packages it depends on. */
  deps: string[];
}

/** Every packages/<dir> with a package.json and a src/ folder, dependencies before dependents. */
export function workspacePackages(): WorkspacePackage[] {
  const base = path.join(root, 'packages');
  const found = readdirSync(base)
    .map((d) => path.join(base, d))
    .filter((d) => existsSync(path.join(d, 'package.json')) && existsSync(path.join(d, 'src')))
    .map((dir) => {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name: string; dependencies?: Record<string, string>; peerDependencies?: Record<string, string>;
      };
      return { name: pkg.name, dir, deps: Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies }) };
    });
  const names = new Set(found.map((p) => p.name));
  for (const p of found) p.deps = p.deps.filter((d) => names.has(d));
  const order: WorkspacePackage[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (p: WorkspacePackage, chain: string[]): void => {
    if (state.get(p.name) === 'done') return;
    if (state.get(p.name) === 'visiting') throw new Error(`build: dependency cycle ${[...chain, p.name].join(' -> ')}`);
    state.set(p.name, 'visiting');
    for (const d of p.deps) visit(found.find((q) => q.name === d)!, [...chain, p.name]);
    state.set(p.name, 'done');
    order.push(p);
  };
  for (const p of [...found].sort((a, b) => a.name.localeCompare(b.name))) visit(p, []);
  return order;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.endsWith('.test.ts') ? [p] : [];
  });
}

function baseOptions(): ts.CompilerOptions {
  const file = path.join(root, 'tsconfig.build.json');
  const parsed = ts.getParsedCommandLineOfConfigFile(file, {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  });
  if (!parsed) throw new Error(`build: cannot read ${file}`);
  return parsed.options;
}

/** Compiles one package into its dist/ (removed first); returns the diagnostics as text ('' when clean). */
export function buildPackage(p: WorkspacePackage, options = baseOptions()): string {
  const src = path.join(p.dir, 'src');
  const outDir = path.join(p.dir, 'dist');
  rmSync(outDir, { recursive: true, force: true });
  const program = ts.createProgram(sourceFiles(src), { ...options, rootDir: src, outDir });
  const emitted = program.emit();
  const diags = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
  return ts.formatDiagnosticsWithColorAndContext(diags, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => root,
    getNewLine: () => '\n',
  });
}

function main(): void {
  const options = baseOptions();
  let failed = false;
  for (const p of workspacePackages()) {
    const t0 = performance.now();
    const errors = buildPackage(p, options);
    const rel = path.relative(root, p.dir);
    if (errors) {
      failed = true;
      console.error(`${p.name} (${rel}): build failed\n${errors}`);
    } else {
      console.log(`${p.name}: ${rel}/dist (${Math.round(performance.now() - t0)} ms)`);
    }
  }
  if (failed) process.exitCode = 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
