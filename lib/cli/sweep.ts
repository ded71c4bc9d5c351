/**
 * `deno task sweep <file.sweep.yaml> [--workers N] [--resume] [--dry-run] [--out DIR]
 * [--backend auto|webgpu|cpu]`: expands a sweep file (lib/sweep/spec.ts), checks every point
 * through the experiment loader before anything runs, then runs the missing points as `deno
 * task run` subprocesses and writes the sweep tables (lib/sweep/exec.ts, aggregate.ts).
 * `--dry-run` prints the points (variant, seed, config hash, status, run folder and the
 * equivalent `deno task run` command) and exits. Exit codes: 0 success, 2 bad input, 1 a point
 * failed (or an internal error), 130 interrupted.
 *
 * `--slurm [--partition P] [--time T] [--cpus-per-task N] [--gpus-per-task N] [--mem M]
 * [--max-parallel K] [--sbatch-arg ARG]... [--run-time-limit DURATION] [--dry-run]` submits the
 * unfinished points as one Slurm array job instead and returns (lib/sweep/slurm.ts; `--dry-run`
 * prints the job script); `--status [--json]` prints each point's state (run folders and Slurm)
 * and rebuilds the sweep tables. The sweep file is checked in full before either.
 */
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import { cliArgs, parseBackend, runCli } from "./common.ts";
import { loadSweep, type ResolvedSweep, runCommandLine } from "../sweep/spec.ts";
import { pointStates, runSweep } from "../sweep/exec.ts";
import { parseDuration } from "../config/duration.ts";
import { formatSweepStatus, rebuildTables, submitSweep, sweepStatus } from "../sweep/slurm.ts";
import { parseSlurmTime, type SlurmOptions } from "../sweep/slurm_script.ts";

const USAGE = "usage: deno task sweep <file.sweep.yaml> [--workers N] [--resume] [--dry-run] " +
  "[--out DIR] [--backend auto|webgpu|cpu]\n" +
  "       deno task sweep <file.sweep.yaml> --slurm [--partition P] [--time HH:MM:SS] " +
  "[--cpus-per-task N] [--gpus-per-task N] [--mem M] [--max-parallel K] [--sbatch-arg ARG]... " +
  "[--run-time-limit DURATION] [--dry-run] [--out DIR] [--backend ...]\n" +
  "       deno task sweep <file.sweep.yaml> --status [--json] [--out DIR]";

/** The options that only `--slurm` takes. */
const SLURM_ONLY = [
  "partition",
  "time",
  "cpus-per-task",
  "gpus-per-task",
  "mem",
  "max-parallel",
  "sbatch-arg",
  "run-time-limit",
] as const;

/** Parsed command line of `sweep`. */
export interface SweepArgs {
  file: string;
  workers: number;
  resume: boolean;
  dryRun: boolean;
  out?: string;
  backend?: BackendRequest;
  /** `--slurm`: submit to Slurm with these options. */
  slurm?: SlurmOptions;
  /** `--status`: print the points' states (as JSON with `json`). */
  status: boolean;
  json: boolean;
}

const positiveInt = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(v)) {
    throw new InputError(`--${name} must be a positive integer (got ${v})\n${USAGE}`);
  }
  return Number(v);
};

/** Parses the sweep command line; bad usage is an InputError with the usage line. */
export function parseSweepArgs(argv: string[]): SweepArgs {
  const { values: v, positionals } = cliArgs(argv, {
    workers: { type: "string" },
    resume: { type: "boolean" },
    "dry-run": { type: "boolean" },
    out: { type: "string" },
    backend: { type: "string" },
    slurm: { type: "boolean" },
    status: { type: "boolean" },
    json: { type: "boolean" },
    partition: { type: "string" },
    time: { type: "string" },
    "cpus-per-task": { type: "string" },
    "gpus-per-task": { type: "string" },
    mem: { type: "string" },
    "max-parallel": { type: "string" },
    "sbatch-arg": { type: "string", multiple: true },
    "run-time-limit": { type: "string" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
  if (!v.slurm) {
    const given = SLURM_ONLY.filter((k) => v[k] !== undefined);
    if (given.length) {
      throw new InputError(`--${given[0]} needs --slurm\n${USAGE}`);
    }
  }
  if (v.status && (v.slurm || v["dry-run"] || v.workers !== undefined)) {
    throw new InputError(`--status takes no --slurm, --dry-run or --workers\n${USAGE}`);
  }
  if (v.json && !v.status) throw new InputError(`--json needs --status\n${USAGE}`);
  if (v.slurm && v.workers !== undefined) {
    throw new InputError(`--workers is for local runs; with --slurm use --max-parallel\n${USAGE}`);
  }
  if (v.workers !== undefined && !/^[1-9][0-9]*$/.test(v.workers)) {
    throw new InputError(`--workers must be a positive integer (got ${v.workers})\n${USAGE}`);
  }
  return {
    file: positionals[0],
    workers: v.workers === undefined ? 1 : Number(v.workers),
    resume: v.resume ?? false,
    dryRun: v["dry-run"] ?? false,
    out: v.out,
    backend: v.backend === undefined ? undefined : parseBackend(v.backend, USAGE),
    slurm: v.slurm ? parseSlurmOptions(v) : undefined,
    status: v.status ?? false,
    json: v.json ?? false,
  };
}

/** The `--slurm` options, checked (bad values are bad input with the usage line). */
function parseSlurmOptions(v: Record<string, string | string[] | boolean | undefined>) {
  const str = (k: string) => v[k] as string | undefined;
  const o: SlurmOptions = {};
  const time = str("time");
  if (time !== undefined) {
    const seconds = parseSlurmTime(time);
    if (seconds === undefined) {
      throw new InputError(
        `--time must be a Slurm time such as 30, 2:00:00 or 1-12:00:00 (got ${time})\n${USAGE}`,
      );
    }
    o.time = { text: time, seconds };
  }
  const partition = str("partition");
  if (partition !== undefined) {
    if (!/^[A-Za-z0-9_.,-]+$/.test(partition)) {
      throw new InputError(`--partition must be a partition name (got ${partition})\n${USAGE}`);
    }
    o.partition = partition;
  }
  o.cpusPerTask = positiveInt("cpus-per-task", str("cpus-per-task"));
  o.gpusPerTask = positiveInt("gpus-per-task", str("gpus-per-task"));
  o.maxParallel = positiveInt("max-parallel", str("max-parallel"));
  const mem = str("mem");
  if (mem !== undefined) {
    if (!/^[0-9]+[KMGT]?$/i.test(mem)) {
      throw new InputError(`--mem must be a size such as 8G or 4000M (got ${mem})\n${USAGE}`);
    }
    o.mem = mem;
  }
  const rtl = str("run-time-limit");
  if (rtl !== undefined) {
    const secs = parseDuration(rtl);
    if (secs === null) {
      throw new InputError(
        `--run-time-limit must be a duration such as 50m or 1h30m (got ${rtl})\n${USAGE}`,
      );
    }
    o.runTimeLimit = secs;
  }
  const extra = (v["sbatch-arg"] as string[] | undefined) ?? [];
  for (const a of extra) {
    if (!a.startsWith("-") || /[\n\r]/.test(a)) {
      throw new InputError(
        `--sbatch-arg takes one sbatch option such as --account=abc (got ${JSON.stringify(a)})` +
          `\n${USAGE}`,
      );
    }
  }
  o.sbatchArgs = extra;
  return o;
}

/** The --dry-run listing: one header, then two lines per point. */
export async function dryRunText(sw: ResolvedSweep, backend?: BackendRequest): Promise<string> {
  const states = await pointStates(sw);
  const seeds = [...new Set(sw.points.map((p) => p.seed))];
  const out = [
    `sweep ${sw.spec.name}: ${sw.points.length} points, ${sw.variants.length} variants, ` +
    `seeds ${seeds.join(", ")}; base ${sw.spec.base}`,
    `sweep folder ${sw.sweepDir} (tables, points.json, logs/); baseline ${sw.baseline}`,
    ...sw.warnings.map((w) => `warning: ${w}`),
  ];
  const w = Math.max(...sw.points.map((p) => p.variant.length), 7);
  const sw8 = Math.max(...sw.points.map((p) => String(p.seed).length), 4);
  out.push(
    `${"#".padStart(3)}  ${"variant".padEnd(w)}  ${"seed".padEnd(sw8)}  hash      status      ` +
      "run folder",
  );
  for (const s of states) {
    const p = s.point;
    const extra = [
      ...(s.status === "unfinished" ? ["--resume"] : []),
      ...(backend ? ["--backend", backend] : []),
    ];
    out.push(
      `${String(p.index).padStart(3)}  ${p.variant.padEnd(w)}  ${String(p.seed).padEnd(sw8)}  ` +
        `${p.hash}  ${s.status.padEnd(10)}  ${p.dir}`,
      `     ${runCommandLine(sw, p, extra)}`,
    );
  }
  return out.join("\n");
}

async function main(argv: string[]): Promise<number> {
  const a = parseSweepArgs(argv);
  const sw = await loadSweep(a.file, { out: a.out });
  if (a.status) {
    const st = await sweepStatus(sw);
    // Rebuilt from the run folders, whatever ran them; a sweep that never ran gets no folder.
    const ran = await Deno.stat(sw.sweepDir).then(() => true, () => false);
    if (ran) await rebuildTables(sw, st.rows, (s) => console.error(s));
    console.log(a.json ? JSON.stringify(st.rows, null, 2) : formatSweepStatus(sw, st));
    return 0;
  }
  if (a.slurm) {
    for (const w of sw.warnings) console.error(`warning: ${w}`);
    return await submitSweep(sw, { ...a.slurm, backend: a.backend, dryRun: a.dryRun });
  }
  if (a.dryRun) {
    console.log(await dryRunText(sw, a.backend));
    return 0;
  }
  for (const w of sw.warnings) console.log(`warning: ${w}`);
  return await runSweep(sw, { workers: a.workers, resume: a.resume, backend: a.backend });
}

if (import.meta.main) await runCli(() => main(Deno.args));
