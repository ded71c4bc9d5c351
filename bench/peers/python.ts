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

/**
 * Starts `script` (a local file) under {@link PYTHON} with `args`, or says why it cannot: the
 * one place that spawns the peers, for one-shot runs and for servers alike.
 */
function spawnPython(
  script: URL,
  args: string[],
  stdin: "piped" | "null",
): { ok: true; child: Deno.ChildProcess } | { ok: false; reason: string } {
  const name = script.pathname.split("/").pop();
  if (script.protocol !== "file:") {
    return { ok: false, reason: `${name} must be a local file, got ${script.href}` };
  }
  try {
    const child = new Deno.Command(PYTHON, {
      args: [decodeURIComponent(script.pathname), ...args],
      // Torch already runs its own 2 threads; letting OpenBLAS spawn a pool per core on top of
      // that oversubscribes the CPU and makes step times swing wildly.
      env: { OPENBLAS_NUM_THREADS: "1" },
      stdin,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return { ok: true, child };
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
}

/** Runs `script` (a file next to the caller) with `args` and parses its report. */
export async function runPythonPeer(script: URL, args: string[]): Promise<PythonPeerRun> {
  const name = script.pathname.split("/").pop();
  const fail = (reason: string, report: Record<string, unknown> = {}) => ({
    result: { ok: false as const, reason },
    report,
  });
  const spawned = spawnPython(script, args, "null");
  if (!spawned.ok) return fail(spawned.reason);
  const out = await spawned.child.output();
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
  /**
   * Sends `cmd` and resolves to the JSON line the script answers with. Throws
   * {@link PeerEndedError} when the script has ended or does not answer within the timeout (it
   * is then killed).
   */
  request(cmd: string): Promise<Record<string, unknown>>;
  /** Sends `quit` and waits for the script to end, killing it if it does not within 10 s. */
  close(): Promise<void>;
}

/** The server script ended (or was killed): it answers no more requests. */
export class PeerEndedError extends Error {}

/** How long a request may take: far above one reference LViT-T step on 2 cores (~2-6 s). */
const REQUEST_TIMEOUT_MS = 300_000;
const CLOSE_GRACE_MS = 10_000;

/**
 * Starts `script` with `args` (which should include `--serve`) and waits for its first JSON
 * line (the ready report). Environment problems come back as `{ ok: false, reason }`, and the
 * process is then gone.
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
  const spawned = spawnPython(script, args, "piped");
  if (!spawned.ok) return spawned;
  const child = spawned.child;
  const stderrText = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let ended = false;
  // Ends the process whatever state it is in, and says how it ended.
  const stop = async (kill: boolean): Promise<string> => {
    if (kill && !ended) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    ended = true;
    await writer.abort().catch(() => {});
    await reader.cancel().catch(() => {});
    const status = await child.status;
    const detail = (await stderrText).trim().split("\n").slice(-3).join(" | ");
    return `${name} ended (exit ${status.code}${status.signal ? `, ${status.signal}` : ""})` +
      (detail ? `: ${detail}` : "");
  };
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
  // The next JSON line, or PeerEndedError when the script ends or stays silent too long.
  const nextJson = async (): Promise<Record<string, unknown>> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), REQUEST_TIMEOUT_MS);
    });
    try {
      const line = await Promise.race([nextLine(), timeout]);
      if (line === "timeout") {
        throw new PeerEndedError(
          `no answer in ${REQUEST_TIMEOUT_MS / 1000} s, killed: ${await stop(true)}`,
        );
      }
      if (line === null) throw new PeerEndedError(await stop(false));
      try {
        return JSON.parse(line);
      } catch {
        throw new PeerEndedError(
          `printed a line that is not JSON (${line.slice(0, 200)}), ` +
            `killed: ${await stop(true)}`,
        );
      }
    } finally {
      clearTimeout(timer);
    }
  };
  let ready: Record<string, unknown>;
  try {
    ready = await nextJson();
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
  if (typeof ready.error === "string") {
    await stop(true);
    return { ok: false, reason: `python3-torch not installed (${ready.error}): ${INSTALL_HINT}` };
  }
  const encoder = new TextEncoder();
  const server: PythonServer = {
    async request(cmd) {
      if (ended) throw new PeerEndedError(`${name} has ended`);
      try {
        await writer.write(encoder.encode(cmd + "\n"));
      } catch {
        // A broken pipe: the script is gone; report how it ended.
        throw new PeerEndedError(await stop(false));
      }
      return await nextJson();
    },
    async close() {
      if (ended) return;
      try {
        await writer.write(encoder.encode("quit\n"));
        await writer.close();
      } catch {
        // Already gone; stop() below collects its status.
      }
      const grace = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Ended meanwhile.
        }
      }, CLOSE_GRACE_MS);
      await stop(false);
      clearTimeout(grace);
    },
  };
  return { ok: true, server, ready };
}
