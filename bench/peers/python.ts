/**
 * Runs a PyTorch peer script under Debian's `/usr/bin/python3` and parses the one-line JSON
 * report it prints last: the timing fields every peer reports, plus the script's other fields
 * for the caller to check. Environment problems (no interpreter, no torch, a failing script)
 * come back as `{ ok: false, reason }`, never as exceptions.
 *
 * @module
 */
import type { PeerResult } from "./types.ts";

/**
 * Debian's python3-torch installs for the system interpreter only; a `python3` found on PATH
 * (e.g. pyenv) would not see it.
 */
export const PYTHON = "/usr/bin/python3";
const INSTALL_HINT = "apt-get install python3-torch libopenblas0-pthread";

/** A peer run: its timings (or why there are none) and the report's fields. */
export interface PythonPeerRun {
  result: PeerResult;
  report: Record<string, unknown>;
}

/** Runs `script` (a file next to the caller) with `args` and parses its report. */
export async function runPythonPeer(script: URL, args: string[]): Promise<PythonPeerRun> {
  const name = script.pathname.split("/").pop();
  const fail = (reason: string, report: Record<string, unknown> = {}) => ({
    result: { ok: false as const, reason },
    report,
  });
  if (script.protocol !== "file:") return fail(`${name} must be a local file, got ${script.href}`);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(PYTHON, {
      args: [decodeURIComponent(script.pathname), ...args],
      // Torch already runs its own 2 threads; letting OpenBLAS spawn a pool per core on top of
      // that oversubscribes the CPU and makes step times swing wildly.
      env: { OPENBLAS_NUM_THREADS: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return fail(`${PYTHON} not found; python3-torch not installed: ${INSTALL_HINT}`);
    }
    return fail(`could not start ${PYTHON}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  const lastLine = stdout.split("\n").at(-1) ?? "";
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = JSON.parse(lastLine);
  } catch {
    parsed = undefined;
  }
  if (parsed && typeof parsed.error === "string") {
    return fail(`python3-torch not installed (${parsed.error}): ${INSTALL_HINT}`);
  }
  if (!out.success || !parsed) {
    const detail = (stderr || stdout).split("\n").slice(-3).join(" | ");
    return fail(`${name} failed (exit ${out.code}): ${detail}`);
  }
  const { median_ms, min_ms, max_ms, runs } = parsed;
  if (
    typeof median_ms !== "number" || typeof min_ms !== "number" ||
    typeof max_ms !== "number" || typeof runs !== "number"
  ) {
    return fail(`${name} printed unexpected output: ${lastLine}`, parsed);
  }
  const times = parsed.times_ms;
  const times_ms = Array.isArray(times) && times.every((t) => typeof t === "number")
    ? times as number[]
    : undefined;
  return {
    result: { ok: true, median_ms, min_ms, max_ms, runs, ...(times_ms ? { times_ms } : {}) },
    report: parsed,
  };
}

/**
 * A peer script kept running between steps (`--serve`): it is sent one command per line and
 * answers each with one JSON line. Used to alternate our steps and the peer's one by one.
 */
export interface PythonServer {
  /** Sends `cmd` and resolves to the JSON line the script answers with. */
  request(cmd: string): Promise<Record<string, unknown>>;
  /** Sends `quit`, closes stdin and waits for the script to end. */
  close(): Promise<void>;
}

/**
 * Starts `script` with `args` (which should include `--serve`) and waits for its first JSON
 * line (the ready report). Environment problems come back as `{ ok: false, reason }`.
 */
export async function startPythonServer(
  script: URL,
  args: string[],
): Promise<
  { ok: true; server: PythonServer; ready: Record<string, unknown> } | {
    ok: false;
    reason: string;
  }
> {
  const name = script.pathname.split("/").pop();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(PYTHON, {
      args: [decodeURIComponent(script.pathname), ...args],
      env: { OPENBLAS_NUM_THREADS: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return {
        ok: false,
        reason: `${PYTHON} not found; python3-torch not installed: ${INSTALL_HINT}`,
      };
    }
    return {
      ok: false,
      reason: `could not start ${PYTHON}: ${e instanceof Error ? e.message : String(e)}`,
    };
  }
  const stderrText = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (): Promise<string | null> => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) return null;
      buffered += value;
    }
  };
  const nextJson = async (): Promise<Record<string, unknown>> => {
    const line = await nextLine();
    if (line === null) {
      const status = await child.status;
      const detail = (await stderrText).trim().split("\n").slice(-3).join(" | ");
      throw new Error(`${name} ended (exit ${status.code}): ${detail}`);
    }
    return JSON.parse(line);
  };
  let ready: Record<string, unknown>;
  try {
    ready = await nextJson();
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
  if (typeof ready.error === "string") {
    await child.status;
    return { ok: false, reason: `python3-torch not installed (${ready.error}): ${INSTALL_HINT}` };
  }
  const encoder = new TextEncoder();
  const server: PythonServer = {
    async request(cmd) {
      await writer.write(encoder.encode(cmd + "\n"));
      return await nextJson();
    },
    async close() {
      try {
        await writer.write(encoder.encode("quit\n"));
        await writer.close();
      } catch {
        // The script already ended; its status below says how.
      }
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.status;
      await stderrText;
    },
  };
  return { ok: true, server, ready };
}
