// Drives the page in Debian's Chromium through playwright-core (no browser
// download): used by the browser test and by bench.ts.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { RunSummary } from './src/protocol.ts';

export const CHROMIUM = process.env.LOWRANK_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Headless flags: no sandbox (root in CI), WebGL2 on SwiftShader, WebGPU (headless
 * Chromium offers no adapter without the flag), and none of the background
 * connections a closed network refuses.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--enable-unsafe-swiftshader', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];

type PageApi = { lowrank: { state: { runs: Record<string, unknown> }; call(r: unknown): Promise<unknown> } };

/** One Chromium with a fresh profile, one page on `url`, and the page's actions as methods. */
export class PageDriver {
  readonly errors: string[] = [];

  private constructor(readonly context: BrowserContext, readonly page: Page, private readonly userDir: string) {
    page.on('pageerror', (e) => this.errors.push(e.message));
  }

  /**
   * Opens `url` in a fresh profile. `webgl: false` disables the GPU and the software
   * rasterizer (SwiftShader), so the page has no WebGL at all: what a browser without WebGL2 sees.
   */
  static async open(url: string, opts: { webgl?: boolean } = {}): Promise<PageDriver> {
    const args = opts.webgl === false
      ? [...CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-swiftshader'), '--disable-gpu', '--disable-software-rasterizer']
      : CHROMIUM_ARGS;
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}: install it with 'apt-get install -y chromium', or point LOWRANK_CHROMIUM at a Chromium binary`);
    }
    const userDir = mkdtempSync(path.join(tmpdir(), 'lowrank-chromium-'));
    const context = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM, headless: true, args, acceptDownloads: true, viewport: { width: 1100, height: 900 },
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const d = new PageDriver(context, page, userDir);
    await page.goto(url);
    await d.idle();
    return d;
  }

  async close(): Promise<void> {
    await this.context.close();
    rmSync(this.userDir, { recursive: true, force: true });
  }

  idle(timeout = 240_000): Promise<unknown> {
    return this.page.waitForSelector('body[data-state=idle]', { timeout });
  }

  /** The message box's text ('' when hidden). */
  async message(): Promise<string> {
    return (await this.page.locator('#message').isVisible()) ? ((await this.page.textContent('#message')) ?? '') : '';
  }

  /** Does `what` and waits until the page has finished the action it starts (body[data-actions] counts them). */
  async act(what: () => Promise<unknown>, timeout = 240_000): Promise<void> {
    const done = Number((await this.page.getAttribute('body', 'data-actions')) ?? 0);
    await what();
    await this.page.waitForFunction((n) => Number(document.body.dataset.actions ?? 0) > n, done, { timeout });
  }

  click(selector: string, timeout?: number): Promise<void> {
    return this.act(() => this.page.click(selector), timeout);
  }

  async fill(values: Record<string, number | string>): Promise<void> {
    for (const [id, v] of Object.entries(values)) await this.page.fill(`#${id}`, String(v));
  }

  async backend(name: 'cpu' | 'gpu' | 'webgpu'): Promise<void> {
    if ((await this.page.inputValue('#backend')) !== name) await this.act(() => this.page.selectOption('#backend', name));
  }

  /** The last run the page recorded under `key` ('pretrain', 'finetune-cpu', 'finetune-gpu', 'finetune-webgpu'). */
  async run(key: string): Promise<RunSummary> {
    const run = await this.page.evaluate((k) => (window as unknown as PageApi).lowrank.state.runs[k], key);
    if (!run) throw new Error(`the page recorded no '${key}' run (message: ${await this.message()})`);
    return run as RunSummary;
  }

  /** Clicks a download button and returns the file's bytes. */
  async download(selector: string): Promise<Uint8Array> {
    const [dl] = await Promise.all([this.page.waitForEvent('download'), this.page.click(selector)]);
    return new Uint8Array(readFileSync(await dl.path()));
  }

  /** A request straight to the page's worker (what the buttons send). */
  call<T>(request: Record<string, unknown>): Promise<T> {
    return this.page.evaluate((r) => (window as unknown as PageApi).lowrank.call(r), request) as Promise<T>;
  }

  /** The page's logits on the probe rows of `text`, with its adapter. */
  async logits(text: string): Promise<Float32Array> {
    const out = await this.page.evaluate(async (t) => {
      const r = (await (window as unknown as PageApi).lowrank.call({ type: 'probe', text: t, useAdapter: true })) as { logits: Float32Array };
      return Array.from(r.logits);
    }, text);
    return Float32Array.from(out);
  }
}
