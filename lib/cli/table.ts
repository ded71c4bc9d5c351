/**
 * `deno task table [FOLDER]... [--reference FILE.json] [--json | --csv | --latex]` (default
 * `runs/`): the results table of the finished runs at or below the folders, one row per
 * experiment and variant with the mean ± sd over its runs (lib/run/results_table.ts), as
 * Markdown; `--json` prints the rows as a JSON list, `--csv` as CSV (figures in %) and `--latex`
 * as a booktabs tabular for a paper. `--reference` adds published figures and names the rows,
 * e.g. `deno task table results/monuseg --reference results/monuseg/reference.json` prints
 * README's MoNuSeg table. Exit codes: 0, 2 for bad input (a missing folder, a summary.json or
 * reference file that is not one, bad usage).
 */
import { InputError } from "../config/errors.ts";
import { cliArgs, runCli } from "./common.ts";
import {
  finishedRuns,
  readReference,
  resultRows,
  resultsCsv,
  resultsLatex,
  resultsMarkdown,
} from "../run/results_table.ts";

const USAGE =
  "usage: deno task table [FOLDER]... [--reference FILE.json] [--json | --csv | --latex]";

/** Runs the table command; returns the exit code. */
export async function main(argv: string[], print = (s: string) => console.log(s)) {
  const { values, positionals } = cliArgs(argv, {
    reference: { type: "string" },
    json: { type: "boolean" },
    csv: { type: "boolean" },
    latex: { type: "boolean" },
  }, USAGE);
  const formats = (["json", "csv", "latex"] as const).filter((f) => values[f]);
  if (formats.length > 1) {
    throw new InputError(`--${formats.join(" and --")}: choose one output format\n${USAGE}`);
  }
  const roots = positionals.length ? positionals : ["runs/"];
  const reference = values.reference === undefined ? null : await readReference(values.reference);
  const rows = await resultRows(await finishedRuns(roots), roots, reference);
  const text = formats[0] === "json"
    ? JSON.stringify(rows, null, 2)
    : formats[0] === "csv"
    ? resultsCsv(rows)
    : formats[0] === "latex"
    ? resultsLatex(rows)
    : resultsMarkdown(rows, reference);
  print(text.trimEnd());
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
