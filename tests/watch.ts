/**
 * Subprocesses run under watch: their peak memory is measured and bounded, and their time.
 *
 * Peak memory is the kernel's high-water mark of the process's resident set (VmHWM in
 * /proc/<pid>/status), sampled every {@link POLL_MS} ms while it runs. VmHWM never decreases,
 * so sampling misses at most what the last interval before exit added; a process whose
 * resident set (VmRSS) passes `maxBytes` is killed at once, so a test of a memory bomb fails
 * by a margin instead of taking the machine with it.
 *
 * Deno lets only a process with all permissions read /proc, and the test suite runs without
 * them, so the watching is done by this file run as its own small process (`deno run -A
 * tests/watch.ts`), which starts the command, watches it and prints one JSON line with the
 * outcome. Outside Linux (no /proc) the peak is null and only the time limit applies; on Linux
 * a peak that could not be read is an error, never a silently skipped check.
 */

/** How often the child's memory is sampled. */
export const POLL_MS = 10;

/** What a watched run did. */
export interface Watched {
  /** Exit code (a killed process: 128 + the signal number, as a shell reports it). */
  code: number;
  /** Stdout then stderr. */
  text: string;
  /** Highest VmHWM seen, in bytes; null outside Linux. */
  peakBytes: number | null;
  /** Why it was killed, if it was. */
  killed: "memory" | "time" | null;
  /** Wall time, ms. */
  ms: number;
}

/** Options of {@link runWatched}. */
export interface WatchOptions {
  cwd?: string;
  /** Kill the process when its resident set passes this (default 2 GiB). */
  maxBytes?: number;
  /** Kill the process after this long (default 120 s). */
  timeoutMs?: number;
  env?: Record<string, string>;
}

async function memoryOf(pid: number): Promise<{ hwm: number; rss: number } | null> {
  let s: string;
  try {
    s = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch {
    return null; // gone already
  }
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
  return { hwm: kb("VmHWM") * 1024, rss: kb("VmRSS") * 1024 };
}

/** The watching itself (in the process with all permissions). */
async function watch(args: string[], o: WatchOptions): Promise<Watched> {
  const maxBytes = o.maxBytes ?? 2 ** 31;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", ...args],
    cwd: o.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp", ...o.env },
  }).spawn();
  const start = performance.now();
  const linux = Deno.build.os === "linux";
  let peak: number | null = null;
  let killed: Watched["killed"] = null;
  let running = true;
  const kill = (why: "memory" | "time") => {
    if (killed || !running) return;
    killed = why;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  };
  const timer = setTimeout(() => kill("time"), o.timeoutMs ?? 120_000);
  const watcher = (async () => {
    while (running && linux) {
      const m = await memoryOf(child.pid);
      if (m && Number.isFinite(m.hwm)) {
        peak = Math.max(peak ?? 0, m.hwm);
        if (m.rss > maxBytes) kill("memory");
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  })();
  const out = await child.output();
  running = false;
  clearTimeout(timer);
  await watcher;
  if (linux && peak === null && !killed) {
    throw new Error(`could not read /proc/${child.pid}/status while it ran`);
  }
  const dec = new TextDecoder();
  return {
    code: out.signal ? 128 + (out.signal === "SIGKILL" ? 9 : 15) : out.code,
    text: dec.decode(out.stdout) + dec.decode(out.stderr),
    peakBytes: peak,
    killed,
    ms: performance.now() - start,
  };
}

/** Runs `deno run -A --unstable-webgpu <args>` under watch (see the module comment). */
export async function runWatched(args: string[], o: WatchOptions = {}): Promise<Watched> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, JSON.stringify({ args, o })],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`the watcher failed: ${dec.decode(out.stdout)}${dec.decode(out.stderr)}`);
  }
  return JSON.parse(dec.decode(out.stdout)) as Watched;
}

/** A one-line account of a watched run for assertion messages. */
export function describeRun(r: Watched): string {
  const mib = r.peakBytes === null ? "?" : (r.peakBytes / 2 ** 20).toFixed(0);
  return `exit ${r.code}${r.killed ? ` (killed: ${r.killed})` : ""}, peak ${mib} MiB, ` +
    `${(r.ms / 1000).toFixed(1)} s:\n${r.text.slice(-3000)}`;
}

/** Asserts that the peak memory was measured (where /proc exists) and stayed below `bytes`. */
export function assertPeakBelow(r: Watched, bytes: number, what: string): void {
  if (Deno.build.os === "linux" && r.peakBytes === null) {
    throw new Error(`${what}: peak memory not measured`);
  }
  if (r.peakBytes !== null && r.peakBytes >= bytes) {
    throw new Error(`${what}: peak ${r.peakBytes} bytes, limit ${bytes}: ${describeRun(r)}`);
  }
}

if (import.meta.main) {
  const { args, o } = JSON.parse(Deno.args[0]) as { args: string[]; o: WatchOptions };
  console.log(JSON.stringify(await watch(args, o)));
}
