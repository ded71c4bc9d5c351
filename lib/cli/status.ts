/**
 * `deno task status [RUN_DIR | FOLDER] [--json]` (default `runs/`): one row per run folder at
 * or below the argument: path, epoch done/total, best epoch, best validation Dice, state
 * (finished, running, paused, failed, fresh) and the ETA of the training left
 * (lib/run/status.ts). `--json` prints the same rows as a JSON list. Exit codes: 0, 2 for a
 * path that does not exist (or bad usage).
 */
import { InputError } from "../config/errors.ts";
import { formatStatus, statusOf } from "../run/status.ts";
import { cliArgs, runCli } from "./common.ts";

const USAGE = "usage: deno task status [RUN_DIR | FOLDER OF RUNS (default runs/)] [--json]";

/** Runs the status command; returns the exit code. */
export async function main(argv: string[], print = (s: string) => console.log(s)) {
  const { values, positionals } = cliArgs(argv, { json: { type: "boolean" } }, USAGE);
  if (positionals.length > 1) throw new InputError(USAGE);
  const root = positionals[0] ?? "runs/";
  const rows = await statusOf(root);
  if (values.json) print(JSON.stringify(rows, null, 2));
  else print(rows.length ? formatStatus(rows) : `no run folders at or below ${root}`);
  return 0;
}

if (import.meta.main) await runCli(() => main(Deno.args));
