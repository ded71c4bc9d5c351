/**
 * Sweeps on a Slurm cluster: `deno task sweep FILE --slurm` submits the unfinished points as one
 * array job (lib/sweep/slurm_script.ts writes its files) and returns; `--status` says where each
 * point stands and rebuilds the sweep tables.
 *
 * Files, under `<sweep dir>/slurm/`: `points.tsv` and `sweep.sbatch` (the latest submission),
 * `jobs.tsv` (every submission: job id, time, array), `tasks/<index>.tsv` (one line per attempt
 * of point <index>: time, job, restart count, host, exit code; written by that point's task
 * only) and `logs/<job>_<index>.out` (the job script's own output). Each point's run output goes
 * to the same `<sweep dir>/logs/<variant>-seed<k>.log` as with the local executor, and the
 * tables are the local executor's (lib/sweep/aggregate.ts), from the run folders.
 *
 * A point's state comes from its run folder (lib/run/status.ts), refined by Slurm where its
 * commands answer: `squeue` (queued or running tasks of the recorded jobs), `sacct` when the
 * cluster keeps accounting, and the task records:
 * - `finished`: summary.json.
 * - `running`: a task of the point runs (squeue), or a live process holds the run folder.
 * - `paused`: a checkpoint and no summary (stopped at a limit, requeued or waiting for the next
 *   `--slurm`); the note says when a task is queued for it.
 * - `failed`: the run recorded a failure, or its last task ended with another exit code than
 *   0/75/130 before the run could say anything (or accounting says FAILED and there is no run).
 * - `pending`: nothing trained yet (queued or not).
 * `--slurm` submits the points that are neither finished, running nor queued; array index k is
 * point k, so points.tsv is the same for every submission of an unchanged sweep.
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import { fileExists, writeAtomic } from "../run/folder.ts";
import { isRunFolder, type RunStatus, runStatus } from "../run/status.ts";
import { type PointState, writeSweepOutputs } from "./aggregate.ts";
import { logPath } from "./exec.ts";
import type { ResolvedSweep, SweepPoint } from "./spec.ts";
import {
  arraySpec,
  pointsTsv,
  sbatchScript,
  type SlurmOptions,
  tsvField,
  tsvUnescape,
} from "./slurm_script.ts";

/** A point's state, as `--status` shows it. */
export type SweepPointState = "pending" | "running" | "paused" | "finished" | "failed";

/** A task of a recorded job as squeue lists it. */
export interface QueuedTask {
  /** The array job id. */
  job: string;
  /** The array index (= the point's index). */
  index: number;
  /** squeue's state: PENDING, RUNNING, COMPLETING, REQUEUED, ... */
  state: string;
  /** squeue's reason (Priority, BeginTime, None, ...). */
  reason: string;
}

/** One attempt of a point's task (`tasks/<index>.tsv`). */
export interface TaskRecord {
  /** When the attempt ended (UTC, ISO 8601). */
  time: string;
  /** `<array job>_<index>` */
  job: string;
  /** SLURM_RESTART_COUNT: 0 for the first attempt, +1 per requeue. */
  restart: number;
  /** The node it ran on. */
  host: string;
  /** The run's exit code. */
  code: number;
}

/** A task as sacct reports it (clusters with accounting). */
export interface AccountedTask {
  /** The array job id. */
  job: string;
  /** The array index (= the point's index). */
  index: number;
  /** sacct's state: COMPLETED, FAILED, TIMEOUT, ... */
  state: string;
  /** sacct's `code:signal`. */
  exit: string;
}

/** One point of `--status` (`--status --json` prints a list of these). */
export interface PointStatusRow {
  /** The point's index (its array index). */
  index: number;
  /** The point's variant. */
  variant: string;
  /** The point's seed. */
  seed: number;
  /** 8-hex config hash. */
  hash: string;
  /** The run folder. */
  dir: string;
  /** The point's log (`<sweep dir>/logs/<variant>-seed<k>.log`). */
  log: string;
  /** Where it stands (see the module doc). */
  state: SweepPointState;
  /** Why, or what Slurm says, in words. */
  note: string | null;
  /** Epochs in the run's metrics.jsonl. */
  epochs_done: number;
  /** train.epochs. */
  epochs_total: number | null;
  /** The point's task in the queue, if any. */
  slurm: { job: string; state: string; reason: string } | null;
  /** The last recorded attempt of its task, if any. */
  last_task: TaskRecord | null;
}

/** What `sweepStatus` found. */
export interface SweepStatus {
  /** One per point, in point order. */
  rows: PointStatusRow[];
  /** The recorded job ids, oldest first. */
  jobs: string[];
  /** Where Slurm's view stands: queried, no commands, or why it could not be read. */
  slurm: "queried" | "no jobs" | "no squeue" | string;
}

/** squeue states of a task that runs (or is being stopped). */
const ACTIVE = new Set([
  "RUNNING",
  "COMPLETING",
  "CONFIGURING",
  "SUSPENDED",
  "STOPPED",
  "SIGNALING",
]);
/** sacct states that end a task without the run having a say. */
const ACCT_FAILED = new Set(["FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"]);

/** `<sweep dir>/slurm` */
export const slurmDir = (sw: ResolvedSweep): string => join(sw.sweepDir, "slurm");

/**
 * A point's state from its run folder (null: none yet), its queued task, its last recorded
 * attempt and accounting (see the module doc). Pure.
 */
export function mergeState(
  folder: Pick<RunStatus, "state" | "note"> | null,
  queued: QueuedTask | null,
  last: TaskRecord | null,
  acct: AccountedTask | null = null,
): { state: SweepPointState; note: string | null } {
  if (folder?.state === "finished") return { state: "finished", note: null };
  if (queued && ACTIVE.has(queued.state)) {
    return { state: "running", note: `slurm job ${queued.job}_${queued.index} ${queued.state}` };
  }
  if (folder?.state === "running") return { state: "running", note: folder.note };
  if (queued) {
    const q = `queued: slurm job ${queued.job}_${queued.index} ${queued.state}` +
      (queued.reason && queued.reason !== "None" ? ` (${queued.reason})` : "");
    return { state: folder?.state === "paused" ? "paused" : "pending", note: q };
  }
  if (folder?.state === "paused") {
    const why = folder.note ? `${folder.note}; ` : "";
    return { state: "paused", note: `${why}not queued: --slurm submits it again` };
  }
  if (folder?.state === "failed") return { state: "failed", note: folder.note };
  if (last && ![0, 75, 130].includes(last.code)) {
    return {
      state: "failed",
      note: `exit ${last.code} in slurm job ${last.job} on ${last.host} (${last.time})`,
    };
  }
  if (acct && ACCT_FAILED.has(acct.state)) {
    return {
      state: "failed",
      note: `slurm job ${acct.job}_${acct.index} ${acct.state} (exit ${acct.exit})`,
    };
  }
  return { state: "pending", note: null };
}

/** Output of a command, or null when it is not installed. */
async function command(
  cmd: string,
  args: string[],
): Promise<{ code: number; out: string; err: string } | null> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** The job ids of `jobs.tsv`, oldest first. */
export async function recordedJobs(sw: ResolvedSweep): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(slurmDir(sw), "jobs.tsv"));
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split("\t")[0]);
}

/**
 * The queued and running tasks of `jobs` (squeue), keyed by point index (the newest job wins);
 * a string says why squeue could not tell.
 */
export async function queuedTasks(jobs: string[]): Promise<Map<number, QueuedTask> | string> {
  const out = new Map<number, QueuedTask>();
  if (!jobs.length) return out;
  const r = await command("squeue", ["-h", "-r", "-j", jobs.join(","), "-o", "%i|%T|%r"]);
  if (r === null) return "no squeue";
  // Jobs the controller has forgotten are an error when no listed job is left: none queued.
  if (r.code !== 0) {
    if (/invalid job id/i.test(r.err)) return out;
    return `squeue failed: ${r.err.trim().split("\n")[0]}`;
  }
  const order = new Map(jobs.map((j, i) => [j, i]));
  for (const line of r.out.split("\n")) {
    const [id, state, reason] = line.trim().split("|");
    const m = /^(\d+)_(\d+)$/.exec(id ?? "");
    if (!m || !order.has(m[1])) continue;
    const t: QueuedTask = { job: m[1], index: Number(m[2]), state, reason: reason ?? "" };
    const prev = out.get(t.index);
    if (!prev || order.get(prev.job)! < order.get(t.job)!) out.set(t.index, t);
  }
  return out;
}

/** sacct's view of `jobs` where the cluster keeps accounting (else an empty map). */
export async function accountedTasks(jobs: string[]): Promise<Map<number, AccountedTask>> {
  const out = new Map<number, AccountedTask>();
  if (!jobs.length) return out;
  const r = await command("sacct", [
    "-n",
    "-P",
    "-X",
    "-j",
    jobs.join(","),
    "-o",
    "JobID,State,ExitCode",
  ]);
  if (r === null || r.code !== 0) return out;
  const order = new Map(jobs.map((j, i) => [j, i]));
  for (const line of r.out.split("\n")) {
    const [id, state, exit] = line.trim().split("|");
    const m = /^(\d+)_(\d+)$/.exec(id ?? "");
    if (!m || !order.has(m[1])) continue;
    const t = { job: m[1], index: Number(m[2]), state: (state ?? "").split(" ")[0], exit };
    const prev = out.get(t.index);
    if (!prev || order.get(prev.job)! <= order.get(t.job)!) out.set(t.index, t);
  }
  return out;
}

/** The last line of `tasks/<index>.tsv`, if any. */
export async function lastTask(sw: ResolvedSweep, index: number): Promise<TaskRecord | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(slurmDir(sw), "tasks", `${index}.tsv`));
  } catch {
    return null;
  }
  const line = text.split("\n").filter((l) => l.trim()).at(-1);
  if (!line) return null;
  const [time, job, restart, host, code] = line.split("\t");
  const n = Number(code);
  return Number.isInteger(n)
    ? { time, job, restart: Number(restart) || 0, host: host ?? "", code: n }
    : null;
}

/** Every point's state (see the module doc). */
export async function sweepStatus(sw: ResolvedSweep): Promise<SweepStatus> {
  const jobs = await recordedJobs(sw);
  const queued = await queuedTasks(jobs);
  const acct = typeof queued === "string" ? new Map() : await accountedTasks(jobs);
  const rows: PointStatusRow[] = [];
  for (const p of sw.points) {
    const folder = await isRunFolder(p.dir) ? await runStatus(p.dir) : null;
    const q = typeof queued === "string" ? null : queued.get(p.index) ?? null;
    const last = await lastTask(sw, p.index);
    const { state, note } = mergeState(folder, q, last, acct.get(p.index) ?? null);
    rows.push({
      index: p.index,
      variant: p.variant,
      seed: p.seed,
      hash: p.hash,
      dir: p.dir,
      log: logPath(sw, p),
      state,
      note,
      epochs_done: folder?.epochs_done ?? 0,
      epochs_total: folder?.epochs_total ?? p.config.train.epochs,
      slurm: q ? { job: q.job, state: q.state, reason: q.reason } : null,
      last_task: last,
    });
  }
  return {
    rows,
    jobs,
    slurm: typeof queued === "string" ? queued : jobs.length ? "queried" : "no jobs",
  };
}

/** The states as the tables' point states (lib/sweep/aggregate.ts). */
export function tableStates(sw: ResolvedSweep, rows: readonly PointStatusRow[]): PointState[] {
  const map: Record<SweepPointState, PointState["status"]> = {
    finished: "done",
    running: "running",
    paused: "unfinished",
    failed: "failed",
    pending: "pending",
  };
  return rows.map((r, i): PointState => ({
    point: sw.points[i],
    status: map[r.state],
    log: r.log,
    ...(r.state === "failed"
      ? { error: r.note ?? "failed", exitCode: r.last_task?.code ?? undefined }
      : {}),
  }));
}

/** `--status` as a table: one line per point, then the counts. */
export function formatSweepStatus(sw: ResolvedSweep, st: SweepStatus): string {
  const head = ["#", "variant", "seed", "hash", "state", "epoch", "slurm", "run folder"];
  const body = st.rows.map((r) => [
    String(r.index),
    r.variant,
    String(r.seed),
    r.hash,
    r.state,
    `${r.epochs_done}/${r.epochs_total ?? "?"}`,
    r.slurm
      ? `${r.slurm.job}_${r.index} ${r.slurm.state}`
      : r.last_task
      ? `${r.last_task.job} exit ${r.last_task.code}`
      : "-",
    r.dir,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const out = [head, ...body].map((c) =>
    c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(w[i]))).join("  ").trimEnd()
  );
  for (const r of st.rows) if (r.note) out.push(`  ${r.index}: ${r.note.split("\n")[0]}`);
  const count = (s: SweepPointState) => st.rows.filter((r) => r.state === s).length;
  const slurm = st.slurm === "queried"
    ? `Slurm jobs ${st.jobs.join(", ")}`
    : st.slurm === "no jobs"
    ? "no Slurm jobs recorded"
    : st.slurm === "no squeue"
    ? `squeue not found: queue states of jobs ${st.jobs.join(", ")} not shown`
    : st.slurm;
  out.push(
    `sweep ${sw.spec.name}: ${st.rows.length} points: ${count("finished")} finished, ` +
      `${count("running")} running, ${count("paused")} paused, ${count("pending")} pending, ` +
      `${count("failed")} failed; ${slurm}; tables in ${sw.sweepDir}`,
  );
  return out.join("\n");
}

/** Rewrites the sweep tables from the run folders and `rows`; a failure is only reported. */
export async function rebuildTables(
  sw: ResolvedSweep,
  rows: readonly PointStatusRow[],
  log: (s: string) => void,
): Promise<void> {
  try {
    await writeSweepOutputs(sw, tableStates(sw, rows));
  } catch (e) {
    log(`warning: cannot write the sweep tables: ${(e as Error).message}`);
  }
}

/** How to submit. */
export interface SubmitOptions extends SlurmOptions {
  /** Passed to every point as `--backend`. */
  backend?: BackendRequest;
  /** Print the job script (stdout) and submit nothing. */
  dryRun?: boolean;
  /** Progress lines (default console.error on dry runs, else console.log). */
  log?: (line: string) => void;
  /** Where the dry run's script goes (default console.log). */
  print?: (text: string) => void;
}

const RUN_SCRIPT = fileURLToPath(new URL("../cli/run.ts", import.meta.url));

/** The submitting process's Deno cache folder (`deno info --json`), else DENO_DIR, else null. */
async function denoDir(): Promise<string | null> {
  const env = Deno.env.get("DENO_DIR");
  try {
    const r = await command(Deno.execPath(), ["info", "--json"]);
    if (r && r.code === 0) {
      const d = JSON.parse(r.out).denoDir;
      if (typeof d === "string" && d) return resolve(d);
    }
  } catch {
    // Fall back to the environment.
  }
  return env ? resolve(env) : null;
}

/** Holds `<slurm dir>/submit.lock` while `f` runs: one submission of a sweep at a time. */
async function withSubmitLock<T>(dir: string, f: () => Promise<T>): Promise<T> {
  await Deno.mkdir(dir, { recursive: true });
  const file = await Deno.open(join(dir, "submit.lock"), { create: true, write: true });
  try {
    await file.lock(true);
    return await f();
  } finally {
    file.close();
  }
}

/**
 * Submits the sweep's points that are neither finished, running nor queued as one array job
 * and returns 0 (also when there is nothing to submit). With `dryRun` it prints the job script
 * and writes nothing. Throws an InputError when sbatch is missing or refuses the job, and when
 * tasks of an earlier submission are queued while points.tsv would change (the sweep file was
 * edited): they would run the new lines.
 */
export async function submitSweep(sw: ResolvedSweep, o: SubmitOptions = {}): Promise<number> {
  const log = o.log ?? (o.dryRun ? (s: string) => console.error(s) : (s) => console.log(s));
  const print = o.print ?? ((s: string) => console.log(s));
  const dir = slurmDir(sw);
  const go = async () => {
    const st = await sweepStatus(sw);
    if (st.slurm !== "queried" && st.slurm !== "no jobs" && st.slurm !== "no squeue") {
      throw new InputError(`${sw.spec.file}: cannot read the queue (${st.slurm})`);
    }
    const todo = st.rows.filter((r) => r.state !== "finished" && r.state !== "running" && !r.slurm);
    const busy = st.rows.filter((r) => r.slurm || r.state === "running");
    const done = st.rows.filter((r) => r.state === "finished").length;
    const head = `sweep ${sw.spec.name}: ${st.rows.length} points, ${done} finished, ` +
      `${busy.length} running or queued`;
    if (!todo.length) {
      if (!o.dryRun) await rebuildTables(sw, st.rows, log);
      log(`${head}; nothing to submit (status: deno task sweep ${sw.spec.file} --status)`);
      return 0;
    }
    const extra = o.backend ? ["--backend", o.backend] : [];
    const tsv = pointsTsv(sw, (p: SweepPoint) => logPath(sw, p), extra);
    const script = sbatchScript({
      sweepName: sw.spec.name,
      sweepFile: sw.spec.file,
      indices: todo.map((r) => r.index),
      cwd: Deno.cwd(),
      slurmDir: resolve(dir),
      deno: Deno.execPath(),
      denoDir: await denoDir(),
      runScript: RUN_SCRIPT,
      options: o,
    });
    if (o.dryRun) {
      print(script.trimEnd());
      log(
        `${head}; would submit ${todo.length} as one array job ` +
          `(${arraySpec(todo.map((r) => r.index), o.maxParallel)}); dry run: nothing written ` +
          "or submitted",
      );
      return 0;
    }
    const tsvPath = join(dir, "points.tsv");
    const old = await Deno.readTextFile(tsvPath).catch(() => null);
    if (old !== null && old !== tsv && busy.some((r) => r.slurm)) {
      throw new InputError(
        `${sw.spec.file}: the sweep's points changed while tasks of Slurm job(s) ` +
          `${[...new Set(busy.filter((r) => r.slurm).map((r) => r.slurm!.job))].join(", ")} ` +
          `are queued or running (they read ${tsvPath}); wait for them or scancel them first`,
      );
    }
    await Deno.mkdir(join(dir, "logs"), { recursive: true });
    await Deno.mkdir(join(dir, "tasks"), { recursive: true });
    if (old !== tsv) await writeAtomic(tsvPath, tsv);
    const scriptPath = join(dir, "sweep.sbatch");
    await writeAtomic(scriptPath, script);
    // Compiles run.ts into DENO_DIR now, so tasks on nodes without internet only read it.
    const cache = await command(Deno.execPath(), ["cache", "--quiet", RUN_SCRIPT]);
    if (cache && cache.code !== 0) {
      log(`warning: deno cache ${RUN_SCRIPT} failed: ${cache.err.trim().split("\n")[0]}`);
    }
    const r = await command("sbatch", ["--parsable", scriptPath]);
    if (r === null) {
      throw new InputError(
        "sbatch not found: --slurm needs Slurm's commands on PATH (--dry-run prints the script)",
      );
    }
    if (r.code !== 0) {
      throw new InputError(`sbatch refused ${scriptPath}: ${r.err.trim() || r.out.trim()}`);
    }
    const job = r.out.trim().split(";")[0];
    if (!/^\d+$/.test(job)) throw new Error(`sbatch printed no job id: ${r.out.trim()}`);
    const jobsPath = join(dir, "jobs.tsv");
    const spec = arraySpec(todo.map((x) => x.index), o.maxParallel);
    const jobs = await Deno.readTextFile(jobsPath).catch(() => "# job\tsubmitted\tarray\n");
    await writeAtomic(
      jobsPath,
      jobs + [job, new Date().toISOString(), spec].map(tsvField).join("\t") + "\n",
    );
    const after = await sweepStatus(sw);
    await rebuildTables(sw, after.rows, log);
    log(
      `${head}; submitted ${todo.length} as Slurm job ${job} (array ${spec}); script ` +
        `${scriptPath}, logs ${join(sw.sweepDir, "logs")}`,
    );
    log(`status: deno task sweep ${sw.spec.file} --status`);
    return 0;
  };
  return o.dryRun ? await go() : await withSubmitLock(dir, go);
}

/** Reads points.tsv back: index -> the run arguments (tests and tools). */
export async function readPointsTsv(path: string): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  if (!(await fileExists(path))) return out;
  for (const line of (await Deno.readTextFile(path)).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const f = line.split("\t").map(tsvUnescape);
    out.set(Number(f[0]), f.slice(6));
  }
  return out;
}
