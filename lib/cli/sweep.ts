/**
 * `deno task sweep <file.sweep.yaml> [--workers N] [--resume] [--dry-run] [--out DIR]
 * [--backend auto|webgpu|cpu]`: expands a sweep file (lib/sweep/spec.ts), checks every point
 * through the experiment loader before anything runs, then runs the missing points as `deno
 * task run` subprocesses and writes the sweep tables (lib/sweep/exec.ts, aggregate.ts).
 * `--dry-run` prints the points (variant, seed, config hash, status, run folder and the
 * equivalent `deno task run` command) and exits. Exit codes: 0 success, 2 bad input, 1 a point
 * failed (or an internal error), 130 interrupted.
 */
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import { cliArgs, parseBackend, runCli } from "./common.ts";
import { loadSweep, type ResolvedSweep, runCommandLine } from "../sweep/spec.ts";
import { pointStates, runSweep } from "../sweep/exec.ts";

const USAGE = "usage: deno task sweep <file.sweep.yaml> [--workers N] [--resume] [--dry-run] " +
  "[--out DIR] [--backend auto|webgpu|cpu]";

/** Parsed command line of `sweep`. */
export interface SweepArgs {
  file: string;
  workers: number;
  resume: boolean;
  dryRun: boolean;
  out?: string;
  backend?: BackendRequest;
}

/** Parses the sweep command line; bad usage is an InputError with the usage line. */
export function parseSweepArgs(argv: string[]): SweepArgs {
  const { values: v, positionals } = cliArgs(argv, {
    workers: { type: "string" },
    resume: { type: "boolean" },
    "dry-run": { type: "boolean" },
    out: { type: "string" },
    backend: { type: "string" },
  }, USAGE);
  if (positionals.length !== 1) throw new InputError(USAGE);
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
  };
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
  if (a.dryRun) {
    console.log(await dryRunText(sw, a.backend));
    return 0;
  }
  for (const w of sw.warnings) console.log(`warning: ${w}`);
  return await runSweep(sw, { workers: a.workers, resume: a.resume, backend: a.backend });
}

if (import.meta.main) await runCli(() => main(Deno.args));
