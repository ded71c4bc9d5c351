/**
 * `deno task data:check DIR [--dataset qata|mosmed|monuseg]`: checks an LViT-layout data set
 * completely (lib/data/check.ts) and reports every problem at once, each naming its file.
 *
 * Output: the naming rules used and why, one summary line per split (stdout); then either "OK"
 * or every problem (stderr). Progress goes to stderr at most every {@link PROGRESS_MS} ms,
 * rewritten in place on a terminal and as plain lines otherwise (logs, CI).
 * Exit codes (design.md 5): 0 no problems, 2 problems in the data or bad usage (no stack
 * trace), 1 internal error.
 */
import { InputError } from "../config/errors.ts";
import { checkDataset, type CheckReport } from "../data/check.ts";
import type { DatasetKind } from "../data/lvit_folder.ts";
import { cliArgs, runCli } from "./common.ts";

const USAGE = "usage: deno task data:check DIR [--dataset qata|mosmed|monuseg]\n" +
  "  DIR holds Train_Folder, Val_Folder and Test_Folder (default: $LVIT_DATA);\n" +
  "  without --dataset the naming is detected from the folder";

const KINDS: readonly DatasetKind[] = ["qata", "mosmed", "monuseg"];

/** Progress lines are at most this often: a sign of life on big sets without flooding logs. */
export const PROGRESS_MS = 2000;

/** Warnings printed before the rest are summarised as a count. */
export const MAX_WARNINGS = 10;

/** A usage error: the message, then the usage text (exit code 2 through runCli). */
const usage = (msg: string) => new InputError(`data:check: ${msg}\n${USAGE}`);

/** Parsed arguments of `data:check`. */
export interface CheckArgs {
  root: string;
  kind?: DatasetKind;
}

/**
 * Parses the arguments of `data:check`.
 * @throws InputError (with the usage text) for unknown flags, a bad --dataset, or no data
 * folder at all
 */
export function parseCheckArgs(args: readonly string[]): CheckArgs {
  const { values: v, positionals } = cliArgs([...args], { dataset: { type: "string" } }, USAGE);
  if (v.dataset !== undefined && !KINDS.includes(v.dataset as DatasetKind)) {
    throw usage(`--dataset must be one of ${KINDS.join(", ")}, got ${v.dataset || "nothing"}`);
  }
  const kind = v.dataset as DatasetKind | undefined;
  if (positionals.length > 1) {
    throw usage(`more than one folder: ${positionals[0]} and ${positionals[1]}`);
  }
  let root: string | undefined = positionals[0];
  if (root === undefined) {
    try {
      root = Deno.env.get("LVIT_DATA") || undefined;
    } catch {
      // No --allow-env: the folder must then come as an argument.
    }
  }
  if (root === undefined) throw usage("no data folder: pass DIR or set LVIT_DATA");
  return { root, kind };
}

const pad = (s: string, n: number) => s + " ".repeat(Math.max(0, n - s.length));

/** The lines printed on stdout: the naming and one summary per split. */
export function summaryLines(r: CheckReport): string[] {
  const lines = [
    `data:check: ${r.root} with ${r.choice.kind} naming (${r.choice.reason})`,
  ];
  for (const s of r.splits) {
    if (!s.present) {
      lines.push(`${pad(s.split, 5)} ${s.folder}: missing`);
      continue;
    }
    const sizes = s.imageSizes.length === 0
      ? ""
      : s.imageSizes.length <= 3
      ? `, images ${s.imageSizes.join(", ")}`
      : `, ${s.imageSizes.length} image sizes`;
    lines.push(
      `${pad(s.split, 5)} ${s.folder}: ${s.pairs} samples (${s.images} images, ${s.masks} masks, ` +
        `${s.texts} text rows in ${s.table}), ${s.decoded} files decoded${sizes}`,
    );
  }
  return lines;
}

/** Indents the continuation lines of a multi-line message under its bullet. */
function bullet(message: string): string {
  return `- ${message.replaceAll("\n", "\n    ")}`;
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const parsed = parseCheckArgs(args);
  const tty = Deno.stderr.isTerminal();
  const start = performance.now();
  let last = start;
  let live = false; // a progress line is showing on the terminal and must be cleared
  const report = await checkDataset(parsed.root, {
    kind: parsed.kind,
    onProgress: (done, total) => {
      const now = performance.now();
      if (now - last < PROGRESS_MS || done === total) return;
      last = now;
      const secs = ((now - start) / 1000).toFixed(0);
      const line = `data:check: decoded ${done}/${total} files (${secs} s)`;
      if (tty) {
        Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line}`));
        live = true;
      } else console.error(line);
    },
  });
  if (live) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
  for (const line of summaryLines(report)) console.log(line);
  // Warnings do not fail the check; a long list of them would bury the problems below.
  for (const w of report.warnings.slice(0, MAX_WARNINGS)) console.log(`warning: ${w}`);
  if (report.warnings.length > MAX_WARNINGS) {
    console.log(`warning: ... and ${report.warnings.length - MAX_WARNINGS} more warnings`);
  }
  const secs = ((performance.now() - start) / 1000).toFixed(1);
  const n = report.problems.length;
  if (n === 0) {
    const samples = report.splits.reduce((a, s) => a + s.pairs, 0);
    console.log(
      `data:check: OK, ${samples} samples, ${report.decoded} files decoded in ${secs} s`,
    );
    return 0;
  }
  console.error(
    `data:check: ${n} problem${n === 1 ? "" : "s"} in ${report.root} ` +
      `(${report.choice.kind} naming, checked in ${secs} s):\n` +
      report.problems.map((p) => bullet(p.message)).join("\n") +
      (report.hint ? `\nhint: ${report.hint}` : ""),
  );
  return 2;
}

// Bad data never throws (checkDataset collects it): anything else is a bug, exit 1 with a stack.
if (import.meta.main) await runCli(() => main(Deno.args));
