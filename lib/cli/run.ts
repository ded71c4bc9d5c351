/**
 * `deno task run <experiment.yaml> [--set key=value]... [--out DIR] [--resume] [--force]
 * [--backend auto|webgpu|cpu]`: trains, selects, tests and reports one experiment into its run
 * folder (design.md 5). Exit codes: 0 success (or a clean interrupt), 2 bad input, 1 internal.
 */
import { loadExperiment } from "../config/load.ts";
import { InputError } from "../config/errors.ts";
import { parseBackend, runCli } from "./common.ts";
import { runExperiment } from "../run/runner.ts";
import type { BackendRequest } from "../backends/select.ts";

const USAGE = "usage: deno task run <experiment.yaml> [--set key=value]... [--out DIR] " +
  "[--resume] [--force] [--backend auto|webgpu|cpu]";

/** Parsed command line of `run` (shared with `eval` and `sweep` where they overlap). */
export interface RunArgs {
  file: string;
  sets: string[];
  out?: string;
  resume: boolean;
  force: boolean;
  backend?: BackendRequest;
}

/** Parses the run command line; bad usage is an InputError with the usage line. */
export function parseRunArgs(argv: string[]): RunArgs {
  const a: RunArgs = { file: "", sets: [], resume: false, force: false };
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new InputError(`${arg} needs a value\n${USAGE}`);
      return v;
    };
    if (arg === "--set") a.sets.push(value());
    else if (arg.startsWith("--set=")) a.sets.push(arg.slice(6));
    else if (arg === "--out") a.out = value();
    else if (arg === "--resume") a.resume = true;
    else if (arg === "--force") a.force = true;
    else if (arg === "--backend") a.backend = parseBackend(value(), USAGE);
    else if (arg.startsWith("-")) throw new InputError(`unknown option ${arg}\n${USAGE}`);
    else files.push(arg);
  }
  if (files.length !== 1) throw new InputError(USAGE);
  if (a.resume && a.force) throw new InputError(`--resume and --force exclude each other`);
  a.file = files[0];
  return a;
}

async function main(argv: string[]): Promise<number> {
  const a = parseRunArgs(argv);
  const exp = await loadExperiment(a.file, a.sets);
  const r = await runExperiment(exp, {
    out: a.out,
    resume: a.resume,
    force: a.force,
    backend: a.backend,
  });
  return r.interrupted ? 130 : 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
