/**
 * `deno task serve DIR [--port N] [--host 127.0.0.1]`: serves a folder written by
 * `deno task export --web` (lib/export/web_serve.ts) so a browser can open its page. Listens on
 * 127.0.0.1 (this machine only) unless `--host` says otherwise; Ctrl-C stops it. A folder that
 * does not exist, a bad port or a port in use is exit 2.
 */
import { InputError } from "../config/errors.ts";
import { serveStatic } from "../export/web_serve.ts";
import { cliArgs, runCli } from "./common.ts";

const USAGE = "usage: deno task serve DIR [--port N (default 8000; 0: any free port)] " +
  "[--host ADDRESS (default 127.0.0.1)]";

async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = cliArgs(argv, {
    port: { type: "string" },
    host: { type: "string" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
  const dir = positionals[0];
  const port = Number(v.port ?? "8000");
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new InputError(`--port must be an integer in [0, 65535] (got ${v.port})\n${USAGE}`);
  }
  try {
    if (!(await Deno.stat(dir)).isDirectory) throw new InputError(`${dir}: not a folder`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new InputError(`${dir}: no such folder`);
    throw e;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    await serveStatic(dir, {
      port,
      host: v.host,
      signal: stop.signal,
      onListen: (url) => console.log(`serve: ${dir} at ${url} (Ctrl-C stops)`),
    });
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.AddrNotAvailable) {
      throw new InputError(
        `serve: cannot listen on ${v.host ?? "127.0.0.1"}:${port}: ${e.message}`,
      );
    }
    throw e;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
