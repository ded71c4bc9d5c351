/**
 * `deno task run <experiment.yaml> [--set key=value]... [--out DIR] [--resume] [--force]
 * [--backend auto|webgpu|cpu] [--time-limit DURATION]`: trains, selects, tests and reports one
 * experiment into its run folder (design.md 5). Exit codes: 0 success, 2 bad input, 1 internal,
 * 130 interrupted by SIGINT/SIGTERM and 75 stopped by the time limit (`--time-limit`, else
 * `train.time_limit`) or by SIGUSR2 (Slurm's warning before a job's limit) at an epoch end; a
 * checkpoint was written in both cases and the command that continues the run is printed.
 */
import { loadExperiment } from "../config/load.ts";
import { InputError } from "../config/errors.ts";
import { DURATION_PHRASE, parseDuration } from "../config/duration.ts";
import { cliArgs, parseBackend, runCli } from "./common.ts";
import { runExperiment } from "../run/runner.ts";
import { shellQuote } from "../sweep/spec.ts";
import type { BackendRequest } from "../backends/select.ts";

const USAGE = "usage: deno task run <experiment.yaml> [--set key=value]... [--out DIR] " +
  "[--resume] [--force] [--backend auto|webgpu|cpu] [--time-limit DURATION]";

/** Exit code of a run stopped by its time limit (design.md 5; EX_TEMPFAIL). */
export const EXIT_TIME_LIMIT = 75;

/** Parsed command line of `run` (shared with `eval` and `sweep` where they overlap). */
export interface RunArgs {
  file: string;
  sets: string[];
  out?: string;
  resume: boolean;
  force: boolean;
  backend?: BackendRequest;
  /** `--time-limit` as given and in seconds. */
  timeLimit?: { text: string; seconds: number };
}

/** Parses the run command line; bad usage is an InputError with the usage line. */
export function parseRunArgs(argv: string[]): RunArgs {
  const { values: v, positionals } = cliArgs(argv, {
    set: { type: "string", multiple: true },
    out: { type: "string" },
    resume: { type: "boolean" },
    force: { type: "boolean" },
    backend: { type: "string" },
    "time-limit": { type: "string" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
  if (v.resume && v.force) throw new InputError(`--resume and --force exclude each other`);
  return {
    file: positionals[0],
    sets: v.set ?? [],
    out: v.out,
    resume: v.resume ?? false,
    force: v.force ?? false,
    backend: v.backend === undefined ? undefined : parseBackend(v.backend, USAGE),
    timeLimit: v["time-limit"] === undefined ? undefined : parseTimeLimit(v["time-limit"]),
  };
}

/** The value of `--time-limit`; anything else is bad input (with the usage line). */
function parseTimeLimit(text: string): { text: string; seconds: number } {
  const seconds = parseDuration(text);
  if (seconds === null) {
    throw new InputError(
      `--time-limit must be ${DURATION_PHRASE} (got ${JSON.stringify(text)})\n${USAGE}`,
    );
  }
  return { text, seconds };
}

/** The shell command that continues the run of `a` from its checkpoint (`--resume`). */
export function resumeCommand(a: RunArgs): string {
  return [
    "deno",
    "task",
    "run",
    a.file,
    ...a.sets.flatMap((x) => ["--set", x]),
    ...(a.out === undefined ? [] : ["--out", a.out]),
    ...(a.backend === undefined ? [] : ["--backend", a.backend]),
    ...(a.timeLimit === undefined ? [] : ["--time-limit", a.timeLimit.text]),
    "--resume",
  ].map(shellQuote).join(" ");
}

async function main(argv: string[]): Promise<number> {
  const a = parseRunArgs(argv);
  const exp = await loadExperiment(a.file, a.sets);
  const r = await runExperiment(exp, {
    out: a.out,
    resume: a.resume,
    force: a.force,
    backend: a.backend,
    timeLimit: a.timeLimit?.seconds,
  });
  if (r.timeLimited) {
    console.log(`continue with: ${resumeCommand(a)}`);
    return EXIT_TIME_LIMIT;
  }
  return r.interrupted ? 130 : 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
