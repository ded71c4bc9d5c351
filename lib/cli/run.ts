/**
 * `deno task run <experiment.yaml> [--set key=value]... [--out DIR] [--resume] [--force]
 * [--backend auto|webgpu|cpu]`: trains, selects, tests and reports one experiment into its run
 * folder (design.md 5). Exit codes: 0 success (or a clean interrupt), 2 bad input, 1 internal.
 */
import { loadExperiment } from "../config/load.ts";
import { InputError } from "../config/errors.ts";
import { cliArgs, parseBackend, runCli } from "./common.ts";
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
  const { values: v, positionals } = cliArgs(argv, {
    set: { type: "string", multiple: true },
    out: { type: "string" },
    resume: { type: "boolean" },
    force: { type: "boolean" },
    backend: { type: "string" },
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
  };
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
