/**
 * Runs the points of a sweep as subprocesses of the run CLI (`deno run ... lib/cli/run.ts`),
 * a few at a time, and keeps the sweep tables current (lib/sweep/aggregate.ts).
 *
 * - A point whose run folder has summary.json is finished: skipped, and says so.
 * - A point with checkpoints/last.safetensors but no summary.json is unfinished. The sweep
 *   refuses to start without `--resume` while any point is unfinished, like `deno task run`
 *   refuses such a folder; with `--resume` it continues them from their checkpoints (the runner
 *   resumes bitwise as if never stopped). Every point is started with `--resume`: for a point
 *   without a checkpoint the runner then simply starts fresh.
 * - Each point's output is appended to `<sweep dir>/logs/<variant>-seed<k>.log` (one header
 *   line per attempt).
 * - A failing point is recorded (exit code, last output lines, log) and the sweep goes on;
 *   the sweep exits 1 at the end if any point failed.
 * - SIGINT/SIGTERM: no new points start; SIGTERM goes to the running points (each writes a
 *   checkpoint after its current step and exits); the sweep writes its tables and exits 130.
 *   A second signal passes SIGTERM on again (the runner then quits at once) and exits.
 *   Points run in their own process group, so a terminal's Ctrl+C reaches them only through
 *   the sweep, once; two signals would make the runner quit without its checkpoint.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { canonicalJson } from "../config/load.ts";
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import { fileExists } from "../run/folder.ts";
import { type PointState, writeSweepOutputs } from "./aggregate.ts";
import { type ResolvedSweep, runArgs, type SweepPoint } from "./spec.ts";

/** How to run a sweep. */
export interface ExecOptions {
  /** Points run at the same time (default 1). */
  workers?: number;
  /** Continue unfinished points from their checkpoints (required when there are any). */
  resume?: boolean;
  /** Passed to every point as `--backend`. */
  backend?: BackendRequest;
  /** Line output (default console.log). */
  log?: (line: string) => void;
  /**
   * Generate each distinct synthetic data set once before starting points (default true), so
   * parallel points do not build the same folder at once.
   */
  prepareData?: boolean;
}

/** `<sweep dir>/logs/<variant>-seed<k>.log` */
export function logPath(sw: ResolvedSweep, p: SweepPoint): string {
  return join(sw.sweepDir, "logs", `${p.variant}-seed${p.seed}.log`);
}

/** Each point's state from its run folder: done (summary.json), unfinished or pending. */
export async function pointStates(sw: ResolvedSweep): Promise<PointState[]> {
  const out: PointState[] = [];
  for (const p of sw.points) {
    const log = logPath(sw, p);
    if (await fileExists(p.paths.summary)) {
      out.push({ point: p, status: "done", skipped: true, log });
    } else if (await fileExists(p.paths.last)) {
      out.push({ point: p, status: "unfinished", log });
    } else out.push({ point: p, status: "pending", log });
  }
  return out;
}

const RUN_SCRIPT = fileURLToPath(new URL("../cli/run.ts", import.meta.url));

async function writeAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await f.write(data.subarray(off));
}

/**
 * Why a point failed, from the end of its stderr (its stdout when stderr is empty): the last
 * few non-empty lines, where the run CLI prints its one-paragraph error (or a stack trace).
 */
function failureText(stderr: string, stdout: string): string {
  const lines = (t: string) => t.split(/[\r\n]+/).map((l) => l.trimEnd()).filter((l) => l.trim());
  const err = lines(stderr);
  return (err.length ? err : lines(stdout)).slice(-12).join("\n");
}

/** The line of a failure text worth a progress line: the `error:` line, else the first. */
function headline(error: string): string {
  const ls = error.split("\n");
  return (ls.find((l) => /^error\b/i.test(l.trim())) ?? ls[0] ?? "").trim();
}

/**
 * Runs the sweep's missing points and writes its tables after every finished point.
 * Returns the exit code: 0 all done, 1 some point failed, 130 interrupted.
 * Throws an InputError (before running anything) for unfinished points without `resume`.
 */
export async function runSweep(sw: ResolvedSweep, o: ExecOptions = {}): Promise<number> {
  const log = o.log ?? ((s: string) => console.log(s));
  const workers = Math.max(1, o.workers ?? 1);
  const states = await pointStates(sw);
  const unfinished = states.filter((s) => s.status === "unfinished");
  if (unfinished.length && !o.resume) {
    throw new InputError(
      `${sw.spec.file}: ${unfinished.length} point(s) have an unfinished run ` +
        `(checkpoints/last.safetensors, no summary.json): ` +
        unfinished.slice(0, 3).map((s) => s.point.dir).join(", ") +
        `${unfinished.length > 3 ? ", ..." : ""}; pass --resume to continue them from their ` +
        "checkpoints",
    );
  }
  const queue = states.filter((s) => s.status !== "done");
  const count = (st: PointState["status"]) => states.filter((s) => s.status === st).length;
  const line = (msg: string) =>
    log(
      `[${count("done")}/${states.length} done, ${count("running")} running, ` +
        `${count("failed")} failed] ${msg}`,
    );
  log(
    `sweep ${sw.spec.name}: ${states.length} points, ${count("done")} finished before, ` +
      `${unfinished.length} to continue, ${queue.length - unfinished.length} to start; ` +
      `${workers} at a time; tables and logs in ${sw.sweepDir}`,
  );
  for (const s of states) {
    if (s.status === "done") {
      line(`skip ${s.point.variant} seed ${s.point.seed}: finished (${s.point.paths.summary})`);
    }
  }

  // Tables are rewritten one at a time, in order, so a slow write never overtakes a newer one.
  let writes = Promise.resolve();
  const flush = () => {
    writes = writes.then(() => writeSweepOutputs(sw, states)).then(
      () => {},
      (e) => log(`warning: cannot write the sweep tables: ${(e as Error).message}`),
    );
    return writes;
  };
  await flush();
  if (!queue.length) {
    log(`sweep ${sw.spec.name}: all ${states.length} points finished; ${tablePath(sw)}`);
    return 0;
  }

  if (o.prepareData !== false) await prepareDataOnce(queue.map((s) => s.point), log);

  const running = new Map<number, Deno.ChildProcess>();
  let stopping = false;
  const forward = () => {
    for (const c of running.values()) {
      try {
        c.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
  };
  const onSignal = () => {
    if (stopping) {
      forward();
      log("stopping at once");
      Deno.exit(130);
    }
    stopping = true;
    log(
      `\nstopping: no new points; SIGTERM to ${running.size} running point(s), which write a ` +
        "checkpoint and stop (again to quit at once)",
    );
    forward();
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);

  const extra = ["--resume", ...(o.backend ? ["--backend", o.backend] : [])];
  const runPoint = async (s: PointState) => {
    const p = s.point;
    const resumed = s.status === "unfinished";
    s.status = "running";
    line(
      `${resumed ? "continue" : "start"} ${p.variant} seed ${p.seed} -> ${p.dir} (log ${s.log})`,
    );
    await Deno.mkdir(dirname(s.log), { recursive: true });
    const file = await Deno.open(s.log, { append: true, create: true, write: true });
    const enc = new TextEncoder();
    const args = ["run", "-A", "--unstable-webgpu", RUN_SCRIPT, ...runArgs(sw, p, extra)];
    let wq = writeAll(
      file,
      enc.encode(
        `=== ${new Date().toISOString()} sweep ${sw.spec.name}, point ${p.index}: ` +
          `${Deno.execPath()} ${args.join(" ")}\n`,
      ),
    );
    const t0 = performance.now();
    const tail = { out: "", err: "" };
    let code: number;
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn();
      running.set(p.index, child);
      if (stopping) child.kill("SIGTERM"); // the signal came while it was being started
      const pump = async (rs: ReadableStream<Uint8Array>, k: "out" | "err") => {
        const dec = new TextDecoder();
        for await (const chunk of rs) {
          wq = wq.then(() => writeAll(file, chunk));
          tail[k] = (tail[k] + dec.decode(chunk, { stream: true })).slice(-8000);
        }
      };
      const [st] = await Promise.all([
        child.status,
        pump(child.stdout, "out"),
        pump(child.stderr, "err"),
      ]);
      running.delete(p.index);
      code = st.code;
    } catch (e) {
      tail.err += `\ncannot start the run: ${(e as Error).message}`;
      code = 1;
    }
    await wq.catch(() => {});
    file.close();
    s.exitCode = code;
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    if (code === 0 && await fileExists(p.paths.summary)) {
      s.status = "done";
      let dice = "";
      try {
        const sum = JSON.parse(await Deno.readTextFile(p.paths.summary));
        dice = `: test Dice ${(sum.test.dice as number).toFixed(4)} (per-image mean)`;
        const pooled = sum.test.pooled?.dice;
        if (typeof pooled === "number") dice += `, pooled ${pooled.toFixed(4)}`;
      } catch {
        // The table reports it; the progress line can do without.
      }
      line(`done ${p.variant} seed ${p.seed}${dice} (${secs} s)`);
    } else if (stopping) {
      s.status = "interrupted";
      line(`stopped ${p.variant} seed ${p.seed} (exit ${code}); --resume continues it`);
    } else {
      s.status = "failed";
      s.error = code === 0
        ? "exited 0 without writing summary.json"
        : failureText(tail.err, tail.out);
      line(
        `FAILED ${p.variant} seed ${p.seed} (exit ${code}, ${secs} s): ${headline(s.error)} ` +
          `(log ${s.log})`,
      );
    }
    await flush();
  };

  try {
    let next = 0;
    const worker = async () => {
      while (!stopping && next < queue.length) await runPoint(queue[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(workers, queue.length) }, worker));
  } finally {
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
  }
  await flush();
  const failed = states.filter((s) => s.status === "failed");
  if (stopping) {
    log(
      `sweep ${sw.spec.name} interrupted: ${count("done")}/${states.length} done; ` +
        `continue with: deno task sweep ${sw.spec.file} --resume`,
    );
    return 130;
  }
  log(
    `sweep ${sw.spec.name}: ${count("done")}/${states.length} done, ${failed.length} failed; ` +
      tablePath(sw),
  );
  for (const s of failed) {
    log(`  failed: ${s.point.variant} seed ${s.point.seed} (exit ${s.exitCode}), log ${s.log}`);
  }
  return failed.length ? 1 : 0;
}

const tablePath = (sw: ResolvedSweep) => `table: ${join(sw.sweepDir, "sweep-summary.md")}`;

/**
 * Generates each distinct synthetic data set of `points` once, in this process, before points
 * start: the runner generates it into a temporary folder and renames that into place, and two
 * points doing so at the same time could delete the folder the other has just started reading.
 * Real data sets need no such care (their caches are written atomically), and a problem here is
 * only reported: the points concerned then fail on their own, and the others still run.
 */
async function prepareDataOnce(points: SweepPoint[], log: (s: string) => void): Promise<void> {
  const synth = points.filter((p) => p.config.data.dataset === "synth" && !p.config.data.root);
  if (!synth.length) return;
  // Loaded on demand: the assembly pulls in the backends, which --dry-run never needs.
  const { dataKey, prepareData } = await import("../run/experiment.ts");
  const seen = new Set<string>();
  const todo = synth.filter((p) => {
    const k = canonicalJson(dataKey(p.config));
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  for (const p of todo) {
    try {
      (await prepareData(p.config, log)).close();
    } catch (e) {
      log(`warning: preparing the data of ${p.variant} seed ${p.seed}: ${(e as Error).message}`);
    }
  }
}
