/**
 * `deno task table [FOLDER]... [--reference FILE.json] [--json]` (default `runs/`): the results
 * table of the finished runs at or below the folders, one row per experiment and variant with
 * the mean ± sd over its runs (lib/run/results_table.ts), as Markdown; `--json` prints the rows
 * as a JSON list instead. `--reference` adds published figures and names the rows, e.g.
 * `deno task table results/monuseg --reference results/monuseg/reference.json` prints README's
 * MoNuSeg table. Exit codes: 0, 2 for bad input (a missing folder, a summary.json or reference
 * file that is not one, bad usage).
 */
import { cliArgs, runCli } from "./common.ts";
import { finishedRuns, readReference, resultRows, resultsMarkdown } from "../run/results_table.ts";

const USAGE = "usage: deno task table [FOLDER]... [--reference FILE.json] [--json]";

/** Runs the table command; returns the exit code. */
export async function main(argv: string[], print = (s: string) => console.log(s)) {
  const { values, positionals } = cliArgs(argv, {
    reference: { type: "string" },
    json: { type: "boolean" },
  }, USAGE);
  const roots = positionals.length ? positionals : ["runs/"];
  const reference = values.reference === undefined ? null : await readReference(values.reference);
  const rows = await resultRows(await finishedRuns(roots), roots, reference);
  print(values.json ? JSON.stringify(rows, null, 2) : resultsMarkdown(rows, reference).trimEnd());
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
