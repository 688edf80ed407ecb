// Shared by the tutorials: run `main` when the file is executed directly.
import { pathToFileURL } from 'node:url';

/** Options every tutorial's `main` takes. */
export interface TutorialOptions {
  /** Few steps and little data (the tests run this); the page shows the full run. */
  quick: boolean;
  /** Where the tutorial prints (default console.log); the tests collect it. */
  log?: (line: string) => void;
}

/** `QUICK=1` or `--quick` selects quick mode. */
export function quickFromEnv(): boolean {
  return process.env.QUICK === '1' || process.argv.includes('--quick');
}

/**
 * Runs `main` when `moduleUrl` is the script node was started with.
 * @example await runIfMain(import.meta.url, main);
 */
export async function runIfMain(moduleUrl: string, main: (opts: TutorialOptions) => Promise<unknown>): Promise<void> {
  const entry = process.argv[1];
  if (!entry || pathToFileURL(entry).href !== moduleUrl) return;
  const t0 = performance.now();
  await main({ quick: quickFromEnv() });
  console.log(`\n(done in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
