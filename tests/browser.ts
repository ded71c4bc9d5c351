/**
 * A headless Chromium driven over the Chrome DevTools Protocol, for the tests of the exported
 * web page (tests/web_export_test.ts): Deno's own WebSocket speaks CDP, so no driver package
 * is needed. Chromium runs with a fresh profile in a temporary folder and `close()` ends it
 * (Browser.close, then SIGKILL if it lingers) and removes the folder; callers close it in a
 * `finally`.
 */

/** The Chromium binary: `LVIT_CHROMIUM`, else `chromium` (Debian) or `chromium-browser` on PATH. */
export function findChromium(): string | null {
  const env = Deno.env.get("LVIT_CHROMIUM");
  if (env) return env;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    for (const name of ["chromium", "chromium-browser"]) {
      try {
        const p = `${dir}/${name}`;
        if (Deno.statSync(p).isFile) return p;
      } catch {
        // not in this folder
      }
    }
  }
  return null;
}

/** One CDP message from the browser. */
interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  sessionId?: string;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/** An event seen on a page session. */
export interface PageEvent {
  method: string;
  params: Record<string, unknown>;
}

/** A tab, attached as a flat CDP session. */
export class Page {
  /** Every event of this session, in order (console messages, requests, exceptions, ...). */
  readonly events: PageEvent[] = [];

  constructor(private readonly browser: Browser, readonly sessionId: string) {}

  /** Sends a command to this tab. */
  send<T = Record<string, unknown>>(method: string, params: Record<string, unknown> = {}) {
    return this.browser.send<T>(method, params, this.sessionId);
  }

  /** Evaluates `expression` in the page (awaiting a promise) and returns its JSON value. */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send<{ result: { value: T }; exceptionDetails?: unknown }>(
      "Runtime.evaluate",
      { expression, awaitPromise: true, returnByValue: true },
    );
    if (r.exceptionDetails) {
      throw new Error(`page: ${expression}: ${JSON.stringify(r.exceptionDetails)}`);
    }
    return r.result.value;
  }

  /** Polls `expression` until it is truthy, or throws after `timeoutMs` naming `what`. */
  async waitFor(expression: string, what: string, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!(await this.evaluate<boolean>(expression))) {
      if (Date.now() > end) {
        throw new Error(`page: timed out waiting for ${what}; console: ${this.consoleText()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The page's console output and uncaught exceptions so far, for failure messages. */
  consoleText(): string {
    return this.events.flatMap((e) => {
      if (e.method === "Runtime.consoleAPICalled") {
        const args = e.params.args as { value?: unknown; description?: string }[];
        return [`${e.params.type}: ${args.map((a) => a.value ?? a.description).join(" ")}`];
      }
      if (e.method === "Runtime.exceptionThrown") return [JSON.stringify(e.params)];
      return [];
    }).join("\n");
  }
}

/** A running headless Chromium. */
export class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, (m: Message) => void>();
  private readonly pages = new Map<string, Page>();
  private constructor(
    private readonly child: Deno.ChildProcess,
    private readonly ws: WebSocket,
    private readonly profile: string,
    private readonly stderrTail: () => string,
  ) {
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data as string) as Message;
      if (m.id !== undefined) {
        this.pending.get(m.id)?.(m);
        this.pending.delete(m.id);
      } else if (m.sessionId && m.method) {
        this.pages.get(m.sessionId)?.events.push({ method: m.method, params: m.params ?? {} });
      }
    };
    ws.onclose = () => {
      for (const resolve of this.pending.values()) resolve({ error: { message: "closed" } });
      this.pending.clear();
    };
  }

  /**
   * Starts Chromium headless with a temporary profile and connects to it. Root needs
   * --no-sandbox; --disable-gpu keeps it to the CPU as on a server.
   */
  static async launch(binary: string, width = 1000, height = 720): Promise<Browser> {
    const profile = await Deno.makeTempDir({ prefix: "lvit-chromium-" });
    const child = new Deno.Command(binary, {
      args: [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        `--user-data-dir=${profile}`,
        `--window-size=${width},${height}`,
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let tail = "";
    const drained = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) tail = (tail + dec.decode(chunk)).slice(-8000);
    })();
    try {
      // Chromium writes its port and the browser endpoint's path into the profile once ready.
      const portFile = `${profile}/DevToolsActivePort`;
      const end = Date.now() + 30_000;
      let lines: string[] = [];
      while (lines.length < 2 || lines[1] === "") {
        if (Date.now() > end) throw new Error(`chromium did not start:\n${tail}`);
        await new Promise((r) => setTimeout(r, 100));
        try {
          lines = (await Deno.readTextFile(portFile)).split("\n");
        } catch {
          // not written yet
        }
      }
      const ws = new WebSocket(`ws://127.0.0.1:${lines[0]}${lines[1]}`);
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error(`cannot connect to chromium:\n${tail}`));
      });
      return new Browser(child, ws, profile, () => tail);
    } catch (e) {
      child.kill("SIGKILL");
      await child.status;
      await drained.catch(() => {});
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw e;
    }
  }

  /** Sends a command (to a page when `sessionId` is given) and resolves with its result. */
  send<T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, (m) => {
        if (m.error) reject(new Error(`${method}: ${m.error.message}`));
        else resolve((m.result ?? {}) as T);
      });
      this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  }

  /** Opens a tab with console, network and page events recorded, sized width x height. */
  async newPage(width: number, height: number): Promise<Page> {
    const { targetId } = await this.send<{ targetId: string }>("Target.createTarget", {
      url: "about:blank",
    });
    const { sessionId } = await this.send<{ sessionId: string }>("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const page = new Page(this, sessionId);
    this.pages.set(sessionId, page);
    for (const domain of ["Page", "Runtime", "Network"]) await page.send(`${domain}.enable`);
    await page.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    });
    return page;
  }

  /** Ends Chromium (gracefully, else SIGKILL after 5 s) and removes its profile. */
  async close(): Promise<void> {
    try {
      if (this.ws.readyState === WebSocket.OPEN) {
        await Promise.race([
          this.send("Browser.close").catch(() => {}),
          new Promise((r) => setTimeout(r, 2000)),
        ]);
      }
    } finally {
      this.ws.close();
      const timer = setTimeout(() => {
        try {
          this.child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, 5000);
      await this.child.status;
      clearTimeout(timer);
      await Deno.remove(this.profile, { recursive: true }).catch(() => {});
    }
  }

  /** The last lines Chromium wrote to stderr (diagnostics). */
  get log(): string {
    return this.stderrTail();
  }
}
