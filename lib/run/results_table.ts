/**
 * The results table of finished runs (`deno task table`): every run folder with a summary.json
 * at or below the given folders, grouped by experiment and variant (so the seeds of one
 * experiment, or repeated runs of it, make one row), with the mean ± sample sd of the test
 * figures, the training time, parameters and MACs per image in the reference's (thop) counting,
 * and, from an optional reference file, the published figures beside them.
 *
 * A reference file is JSON: `{ "source": "...", "rows": [{ "run": "<experiment>/<variant>",
 * "name": "U-Net", "dice": 76.45, "iou": 62.86 }, ...] }` (figures in %, both optional). Its rows
 * give the table's names and order; a row without runs is kept (shown as not run), so the table
 * shows what is missing. Groups the file does not name follow, sorted.
 *
 * Summaries and the reference file are read bounded and checked field by field: a file that is
 * not what it should be is bad input naming the file, never a crash or a wrong row.
 */
import { join, relative } from "node:path";
import { z } from "../deps.ts";
import { InputError } from "../config/errors.ts";
import { loadExperiment } from "../config/load.ts";
import { BoundedReadError, readTextBounded } from "../io/bounded.ts";
import { countModel } from "../models/count.ts";
import { csvCell, fixed, mdCell, meanSd, signed, type Stat } from "../sweep/aggregate.ts";
import { experimentModel, geometryOf } from "./experiment.ts";
import { findRunFolders } from "./status.ts";
import type { Summary } from "./runner.ts";

/** summary.json is about a kilobyte; anything near this bound is not one. */
export const MAX_SUMMARY_BYTES = 2 ** 20;

const finite = z.number().refine(Number.isFinite, { error: "must be a finite number" });
const fraction = finite.refine((x) => x >= 0 && x <= 1, { error: "must be within [0, 1]" });

/** The fields of summary.json (design.md 5) that the table reads. */
const SummaryFields = z.object({
  experiment: z.string().min(1),
  variant: z.string().min(1),
  seed: z.number().int(),
  backend: z.string(),
  adapter: z.string(),
  params: z.number().int().nonnegative(),
  epochs: z.number().int().nonnegative(),
  best_epoch: z.number().int().nullable(),
  test: z.object({
    dice: fraction,
    iou: fraction,
    pooled: z.object({ dice: fraction, iou: fraction }).optional(),
  }),
  train_seconds: finite.refine((x) => x >= 0, { error: "must not be negative" }),
});

/**
 * What the table needs of one finished run: these fields of summary.json (design.md 5); `pooled`
 * may be absent (runs that predate it).
 */
export type RunSummary =
  & Pick<
    Summary,
    | "experiment"
    | "variant"
    | "seed"
    | "backend"
    | "adapter"
    | "params"
    | "epochs"
    | "best_epoch"
    | "train_seconds"
  >
  & { test: Pick<Summary["test"], "dice" | "iou"> & Partial<Pick<Summary["test"], "pooled">> };

/** One finished run. */
export interface FinishedRun {
  /** The run folder, as found. */
  dir: string;
  summary: RunSummary;
}

const ReferenceFile = z.strictObject({
  source: z.string().optional(),
  rows: z.array(z.strictObject({
    run: z.string().regex(/^[^/]+\/[^/]+$/, { error: "must be '<experiment>/<variant>'" }),
    name: z.string().min(1).optional(),
    dice: finite.optional(),
    iou: finite.optional(),
  })).max(1000),
});

/** A reference file (see the module comment): published figures in %. */
export interface Reference {
  source?: string;
  rows: { run: string; name?: string; dice?: number; iou?: number }[];
}

/** A reference file is a few kilobytes. */
export const MAX_REFERENCE_BYTES = 2 ** 20;

/** The first problem of a failed zod parse as `field.path: message`. */
function firstIssue(e: z.ZodError): string {
  const i = e.issues[0];
  const at = i.path.length ? i.path.join(".") : "(top level)";
  return `${at}: ${i.message}`;
}

async function readJson(path: string, maxBytes: number, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readTextBounded(path, maxBytes, what);
  } catch (e) {
    if (e instanceof BoundedReadError) throw new InputError(e.message);
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** A run folder's summary.json, checked; bad input naming the file when it is not one. */
export async function readRunSummary(dir: string): Promise<RunSummary> {
  const path = join(dir, "summary.json");
  const r = SummaryFields.safeParse(await readJson(path, MAX_SUMMARY_BYTES, "summary files"));
  if (!r.success) {
    throw new InputError(`${path}: not a run summary: ${firstIssue(r.error)}`);
  }
  return r.data;
}

/** A reference file, checked (see the module comment). */
export async function readReference(path: string): Promise<Reference> {
  const r = ReferenceFile.safeParse(await readJson(path, MAX_REFERENCE_BYTES, "reference files"));
  if (!r.success) throw new InputError(`${path}: not a reference file: ${firstIssue(r.error)}`);
  const seen = new Set<string>();
  for (const row of r.data.rows) {
    if (seen.has(row.run)) throw new InputError(`${path}: run '${row.run}' is listed twice`);
    seen.add(row.run);
  }
  return r.data;
}

/**
 * The finished runs at or below each root (folders with a summary.json; unfinished runs are
 * left out), in path order.
 */
export async function finishedRuns(roots: readonly string[]): Promise<FinishedRun[]> {
  const out: FinishedRun[] = [];
  for (const root of roots) {
    for (const dir of await findRunFolders(root)) {
      try {
        const st = await Deno.stat(join(dir, "summary.json"));
        if (!st.isFile) continue;
      } catch {
        continue; // not finished
      }
      out.push({ dir, summary: await readRunSummary(dir) });
    }
  }
  return out;
}

/** MACs per image in the reference's (thop) counting, from a run's config.yaml. */
export type MacsOf = (dir: string) => Promise<number | null>;

/**
 * Builds the run's model from its config.yaml and counts it; null when the config no longer
 * loads (a run from an older version whose options have changed).
 */
export const referenceMacsOf: MacsOf = async (dir) => {
  try {
    const cfg = (await loadExperiment(join(dir, "config.yaml"))).config;
    const { channels, size } = geometryOf(cfg);
    return countModel(experimentModel(cfg).fn, 1, size, channels).macsReference;
  } catch (e) {
    if (e instanceof InputError) return null;
    throw e;
  }
};

/** One row of the table. */
export interface ResultRow {
  /** The reference file's name for it, else `<experiment>/<variant>`. */
  name: string;
  /** `<experiment>/<variant>`. */
  run: string;
  /** The run folders, relative to the root they were found under. */
  folders: string[];
  seeds: number[];
  testDice: Stat;
  testIou: Stat;
  pooledDice: Stat;
  pooledIou: Stat;
  /** The published figures (%), when the reference file gives them. */
  reference: { dice: number | null; iou: number | null } | null;
  /** Mean per-image test Dice minus the reference's, in percentage points. */
  diceDiff: number | null;
  bestEpochs: (number | null)[];
  epochs: number[];
  trainHours: Stat;
  /** Where the runs ran, e.g. `cpu, 1 thread` (distinct values). */
  ranOn: string[];
  /** Distinct parameter counts. */
  params: number[];
  /**
   * Reference MACs per image, counted from the first run's config (the runs of one experiment
   * and variant share their model); null without runs or where the config no longer loads.
   */
  macs: number | null;
}

/** `cpu, 1 thread` / `webgpu` from a summary's backend and adapter. */
export function ranOn(s: Pick<RunSummary, "backend" | "adapter">): string {
  const t = /(\d+) threads?/.exec(s.adapter);
  return t ? `${s.backend}, ${t[1]} thread${t[1] === "1" ? "" : "s"}` : s.backend;
}

const distinct = <T>(xs: T[]) => [...new Set(xs)];

/**
 * The table's rows: the reference file's rows first, in its order (kept without runs), then the
 * other groups sorted by `<experiment>/<variant>`.
 */
export async function resultRows(
  runs: readonly FinishedRun[],
  roots: readonly string[],
  reference: Reference | null,
  macsOf: MacsOf = referenceMacsOf,
): Promise<ResultRow[]> {
  const groups = new Map<string, FinishedRun[]>();
  for (const r of runs) {
    const key = `${r.summary.experiment}/${r.summary.variant}`;
    groups.set(key, [...groups.get(key) ?? [], r]);
  }
  const named = reference?.rows ?? [];
  const keys = [
    ...named.map((r) => r.run),
    ...[...groups.keys()].filter((k) => !named.some((r) => r.run === k)).sort(),
  ];
  const rel = (dir: string) => {
    const root = roots.find((r) => !relative(r, dir).startsWith(".."));
    return root === undefined ? dir : relative(root, dir) || ".";
  };
  const rows: ResultRow[] = [];
  for (const key of keys) {
    const rs = groups.get(key) ?? [];
    const ref = named.find((r) => r.run === key);
    const s = rs.map((r) => r.summary);
    const pooled = s.map((x) => x.test.pooled).filter((p) => p !== undefined);
    const testDice = meanSd(s.map((x) => x.test.dice));
    const refDice = ref?.dice ?? null;
    rows.push({
      name: ref?.name ?? key,
      run: key,
      folders: rs.map((r) => rel(r.dir)),
      seeds: s.map((x) => x.seed),
      testDice,
      testIou: meanSd(s.map((x) => x.test.iou)),
      pooledDice: meanSd(pooled.map((p) => p.dice)),
      pooledIou: meanSd(pooled.map((p) => p.iou)),
      reference: ref && (ref.dice !== undefined || ref.iou !== undefined)
        ? { dice: ref.dice ?? null, iou: ref.iou ?? null }
        : null,
      diceDiff: refDice === null || testDice.mean === null ? null : 100 * testDice.mean - refDice,
      bestEpochs: s.map((x) => x.best_epoch),
      epochs: s.map((x) => x.epochs),
      trainHours: meanSd(s.map((x) => x.train_seconds / 3600)),
      ranOn: distinct(s.map(ranOn)),
      params: distinct(s.map((x) => x.params)),
      macs: rs.length ? await macsOf(rs[0].dir) : null,
    });
  }
  return rows;
}

const NA = "n/a";

/** A percentage: the value alone for one run, `mean ± sd` for several, `—` for none. */
function pct(s: Stat): string {
  if (s.mean === null) return "—";
  return s.n < 2 || s.sd === null
    ? fixed(100 * s.mean, 2)
    : `${fixed(100 * s.mean, 2)} ± ${fixed(100 * s.sd, 2)}`;
}

/** The Markdown table, with a line on how to read it. */
export function resultsMarkdown(rows: readonly ResultRow[], reference: Reference | null): string {
  const hasRef = rows.some((r) => r.reference);
  const head = [
    "model",
    "runs",
    "per-image Dice / IoU (%)",
    "pooled Dice / IoU (%)",
    ...(hasRef ? ["reference Dice / IoU (%)", "Δ Dice (points)"] : []),
    "best / last epoch",
    "train time",
    "params (M) / GMACs",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => " --- ").join("|")}|`];
  for (const r of rows) {
    const n = r.folders.length;
    const cells = [
      r.name,
      n ? r.folders.map((f) => `\`${f}\``).join(", ") : "not run",
      n ? `${pct(r.testDice)} / ${pct(r.testIou)}` : "—",
      n ? `${pct(r.pooledDice)} / ${pct(r.pooledIou)}` : "—",
      ...(hasRef
        ? [
          r.reference
            ? `${r.reference.dice === null ? NA : fixed(r.reference.dice, 2)} / ${
              r.reference.iou === null ? NA : fixed(r.reference.iou, 2)
            }`
            : "—",
          r.diceDiff === null ? "—" : signed(r.diceDiff, 2),
        ]
        : []),
      n ? r.bestEpochs.map((b, i) => `${b ?? NA} / ${r.epochs[i]}`).join(", ") : "—",
      n
        ? `${fixed(r.trainHours.mean ?? 0, 2)} h${
          n > 1 && r.trainHours.sd !== null ? ` ± ${fixed(r.trainHours.sd, 2)}` : ""
        } (${r.ranOn.join("; ")})`
        : "—",
      n
        ? `${r.params.map((p) => fixed(p / 1e6, 2)).join("/")} / ${
          r.macs === null ? NA : fixed(r.macs / 1e9, 2)
        }`
        : "—",
    ];
    lines.push(
      `| ${cells.map(mdCell).join(" | ")} |`,
    );
  }
  const notes = [
    "Per-image: each test image's score averaged (the reference's metric); pooled: one score " +
    "from the pixel counts of the whole test split. One run: its figure; several (seeds or " +
    "repeats of one experiment and variant): mean ± sample sd. GMACs: one image's forward in the " +
    "reference's (thop) counting.",
  ];
  if (hasRef && reference?.source) notes.push(`Reference: ${reference.source}`);
  return `${lines.join("\n")}\n\n${notes.join("\n\n")}\n`;
}

/** The CSV columns, in order: figures in %, empty where there is none. */
export const RESULTS_CSV_COLUMNS = [
  "name",
  "run",
  "runs",
  "seeds",
  "test_dice_mean",
  "test_dice_sd",
  "test_iou_mean",
  "test_iou_sd",
  "pooled_dice_mean",
  "pooled_dice_sd",
  "pooled_iou_mean",
  "pooled_iou_sd",
  "reference_dice",
  "reference_iou",
  "dice_diff",
  "best_epochs",
  "epochs",
  "train_hours_mean",
  "train_hours_sd",
  "ran_on",
  "params",
  "macs_reference",
] as const;

/** The rows as CSV (RESULTS_CSV_COLUMNS), for spreadsheets and plotting scripts. */
export function resultsCsv(rows: readonly ResultRow[]): string {
  const num = (x: number | null | undefined, d: number) =>
    x === null || x === undefined ? "" : fixed(x, d);
  const scaled = (x: number | null, scale: number) => x === null ? null : scale * x;
  const stat = (s: Stat, scale: number) => [
    num(scaled(s.mean, scale), 4),
    num(scaled(s.sd, scale), 4),
  ];
  const lines = [RESULTS_CSV_COLUMNS.join(",")];
  for (const r of rows) {
    lines.push(
      [
        r.name,
        r.run,
        r.folders.join(" "),
        r.seeds.join(" "),
        ...stat(r.testDice, 100),
        ...stat(r.testIou, 100),
        ...stat(r.pooledDice, 100),
        ...stat(r.pooledIou, 100),
        num(r.reference?.dice, 2),
        num(r.reference?.iou, 2),
        num(r.diceDiff, 4),
        r.bestEpochs.map((b) => b ?? "").join(" "),
        r.epochs.join(" "),
        ...stat(r.trainHours, 1),
        r.ranOn.join("; "),
        r.params.join(" "),
        r.macs === null ? "" : String(r.macs),
      ].map(csvCell).join(","),
    );
  }
  return lines.join("\n") + "\n";
}

/** Text for LaTeX: its special characters escaped, `code` spans as \texttt. */
export function latexText(s: string): string {
  const esc = (t: string) =>
    t.replace(
      /[\\{}&%$#_^~]/g,
      (c) =>
        c === "\\"
          ? "\\textbackslash{}"
          : c === "^"
          ? "\\textasciicircum{}"
          : c === "~"
          ? "\\textasciitilde{}"
          : `\\${c}`,
    );
  return s.split("`").map((part, i) => i % 2 ? `\\texttt{${esc(part)}}` : esc(part)).join("");
}

/**
 * A LaTeX (booktabs) table in the layout of the papers' tables: per-image Dice and IoU (mean ±
 * sd where several runs), the reference's figures when given, parameters and GMACs.
 */
export function resultsLatex(rows: readonly ResultRow[]): string {
  const hasRef = rows.some((r) => r.reference);
  const pm = (s: Stat) =>
    s.mean === null
      ? "--"
      : s.n < 2 || s.sd === null
      ? `$${fixed(100 * s.mean, 2)}$`
      : `$${fixed(100 * s.mean, 2)} \\pm ${fixed(100 * s.sd, 2)}$`;
  const ref = (x: number | null | undefined) => x === null || x === undefined ? "--" : fixed(x, 2);
  const head = [
    "Model",
    "Dice (\\%)",
    "IoU (\\%)",
    ...(hasRef ? ["Ref.\\ Dice (\\%)", "Ref.\\ IoU (\\%)"] : []),
    "Params (M)",
    "GMACs",
  ];
  const lines = [
    `\\begin{tabular}{l${"r".repeat(head.length - 1)}}`,
    "\\toprule",
    `${head.join(" & ")} \\\\`,
    "\\midrule",
  ];
  for (const r of rows) {
    const cells = [
      latexText(r.name),
      pm(r.testDice),
      pm(r.testIou),
      ...(hasRef ? [ref(r.reference?.dice), ref(r.reference?.iou)] : []),
      r.params.length ? r.params.map((p) => fixed(p / 1e6, 2)).join("/") : "--",
      r.macs === null ? "--" : fixed(r.macs / 1e9, 2),
    ];
    lines.push(`${cells.join(" & ")} \\\\`);
  }
  lines.push("\\bottomrule", "\\end{tabular}");
  return lines.join("\n") + "\n";
}
