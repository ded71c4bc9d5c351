/**
 * The human-readable part of a run folder (design.md 5): `report.md` with a summary table,
 * training curves as SVG, an overlay grid as PNG and the resolved config.
 *
 * Rendering is a pure function of what is already in the run folder (summary.json,
 * metrics.jsonl, config.yaml and overlay tiles), with no clock or locale involved, so a report
 * can be regenerated at any time and comes out byte-identical. Writing is separate and atomic
 * per file, so a crash mid-write never leaves a truncated report behind.
 */
import { isAbsolute, join } from "node:path";
import { gridPng } from "./images.ts";
import { writeAtomic } from "../io/atomic.ts";
import type { EpochRecord as TrainerEpochRecord } from "../train/trainer.ts";
import { lineChartSvg } from "./svg.ts";

/** One `kind: "epoch"` line of metrics.jsonl (only the fields the report reads are needed). */
export type EpochRecord = Pick<
  TrainerEpochRecord,
  "kind" | "epoch" | "steps" | "loss" | "lr" | "val_dice" | "val_iou" | "seconds" | "best"
>;

/** One overlay picture (lib/report/images.ts `overlayRgb`) and the Dice of its prediction. */
export interface OverlayTile {
  /** The sample's key (its mask file name), listed with its Dice under the grid. */
  key: string;
  /** The overlay pixels, `tileSize x tileSize` RGB interleaved. */
  rgb: Uint8Array;
  /** Dice of the prediction on this sample. */
  dice: number;
}

/** Everything a report is made from. */
export interface ReportInput {
  /** summary.json contents (design.md 5); missing or non-numeric fields show as "n/a". */
  summary: Record<string, unknown>;
  /** The epoch records of metrics.jsonl, in file order. */
  epochs: EpochRecord[];
  /** The resolved config.yaml, shown collapsed at the end. */
  configYaml: string;
  /** Tiles for the overlay grid, all `tileSize x tileSize` RGB. */
  overlays: OverlayTile[];
  /** Side of every overlay tile, in pixels. */
  tileSize: number;
}

/** A rendered report: report.md's text and the files it links, by path relative to the run. */
export interface RenderedReport {
  /** The text of report.md. */
  markdown: string;
  /** The linked files (SVG charts, overlay PNG, ...) by path relative to the run folder. */
  files: Record<string, Uint8Array | string>;
}

/** Overlay grid width in tiles: wide enough to compare, narrow enough to read on a laptop. */
export const OVERLAY_COLUMNS = 4;

const NA = "n/a";

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : NaN;
}

/** `obj[a][b]...` as a finite number, NaN when missing or not a number. */
function field(obj: unknown, ...path: string[]): number {
  let cur = obj;
  for (const k of path) {
    if (cur === null || typeof cur !== "object") return NaN;
    cur = (cur as Record<string, unknown>)[k];
  }
  return num(cur);
}

/** A fraction as a percentage with two decimals ("81.23%"). */
export function pct(v: number): string {
  return Number.isFinite(v) ? `${(v * 100).toFixed(2)}%` : NA;
}

function fixed(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : NA;
}

/** Thousands separators by hand: toLocaleString depends on the machine's locale. */
function grouped(n: number): string {
  const s = Math.round(Math.abs(n)).toString();
  const parts: string[] = [];
  for (let end = s.length; end > 0; end -= 3) parts.unshift(s.slice(Math.max(0, end - 3), end));
  return (n < 0 ? "-" : "") + parts.join(",");
}

function params(v: number): string {
  if (!Number.isFinite(v)) return NA;
  return `${grouped(v)} (${(v / 1e6).toFixed(2)} M)`;
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return NA;
  if (s < 60) return `${s.toFixed(1)} s`;
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  const hms = h > 0
    ? `${h}h ${String(m).padStart(2, "0")}m ${String(sec).padStart(2, "0")}s`
    : `${m}m ${String(sec).padStart(2, "0")}s`;
  return `${hms} (${s.toFixed(1)} s)`;
}

/**
 * Text made inert for Markdown: names come from configs and file names, and a `|` or `_` in
 * them would otherwise break a table or start emphasis.
 */
function md(s: string): string {
  return s.replace(/\r?\n/g, " ").replace(/[\\`*_{}\[\]<>#|!&~$]/g, "\\$&");
}

/** A summary field that should be text: strings as is, objects as compact JSON. */
function text(v: unknown): string {
  if (v === undefined || v === null || v === "") return NA;
  if (typeof v === "string") return md(v);
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : NA;
  return md(JSON.stringify(v));
}

function integer(v: unknown): string {
  const n = num(v);
  return Number.isFinite(n) ? String(n) : NA;
}

/**
 * The epoch records to plot: epoch lines only, one per epoch number (the latest wins, so a
 * resumed run that re-logged an epoch shows it once), in epoch order.
 */
function cleanEpochs(epochs: EpochRecord[]): EpochRecord[] {
  const byEpoch = new Map<number, EpochRecord>();
  for (const e of epochs) {
    if (e && e.kind === "epoch" && Number.isFinite(e.epoch)) byEpoch.set(e.epoch, e);
  }
  return [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
}

function orNaN(v: number | null | undefined): number {
  return typeof v === "number" ? v : NaN;
}

function epochLine(e: EpochRecord): string {
  return `epoch ${e.epoch} (loss ${fixed(orNaN(e.loss), 4)}, val Dice ${pct(orNaN(e.val_dice))}, ` +
    `val IoU ${pct(orNaN(e.val_iou))})`;
}

/** A fence longer than any backtick run in `body`, so a config cannot close its own block. */
function fence(body: string): string {
  const longest = Math.max(0, ...(body.match(/`+/g) ?? []).map((r) => r.length));
  return "`".repeat(Math.max(3, longest + 1));
}

/**
 * Renders report.md and the files it links (`plots/loss.svg`, `plots/lr.svg`, `plots/val.svg`,
 * `overlays.png`), without touching the file system. A file is produced only when there is
 * something to show (no plots before the first epoch, no validation plot without validation
 * metrics, no grid without overlays); the Markdown says so instead, and links exactly the files
 * returned. Missing or non-finite numbers print as "n/a".
 */
export function renderReport(input: ReportInput): RenderedReport {
  const s = input.summary ?? {};
  const files: Record<string, Uint8Array | string> = {};
  const lines: string[] = [];
  const push = (...l: string[]) => lines.push(...l);

  push(`# Run report: ${text(s.experiment)} / ${text(s.variant)}`, "");

  push("## Summary", "");
  push("| Split | Metric | Percent | Fraction |", "| --- | --- | ---: | ---: |");
  const metric = (split: string, label: string, ...path: string[]) => {
    const v = field(s, split, ...path);
    push(`| ${split} | ${label} | ${pct(v)} | ${fixed(v, 4)} |`);
  };
  const perImage = "(per-image mean)";
  const pooled = "(pooled over pixels)";
  metric("val", `Dice ${perImage}`, "dice");
  metric("val", `IoU ${perImage}`, "iou");
  metric("test", `Dice ${perImage}`, "dice");
  metric("test", `IoU ${perImage}`, "iou");
  metric("test", `F1 ${perImage}`, "f1");
  metric("test", `Dice ${pooled}`, "pooled", "dice");
  metric("test", `IoU ${pooled}`, "pooled", "iou");
  push("");
  push(
    "Per-image mean: each image's score averaged over the split, as the reference computes it " +
      "(the headline). Pooled over pixels: one score from the pixel counts summed over the " +
      "whole split, as GuideDecoder and its forks report it.",
    "",
  );
  push("| Run | |", "| --- | --- |");
  push(`| Experiment | ${text(s.experiment)} |`);
  push(`| Variant | ${text(s.variant)} |`);
  push(`| Seed | ${integer(s.seed)} |`);
  push(`| Backend | ${text(s.backend)} |`);
  push(`| Adapter | ${text(s.adapter)} |`);
  push(`| Parameters | ${params(num(s.params))} |`);
  push(`| Epochs | ${integer(s.epochs)} |`);
  push(`| Steps | ${integer(s.steps)} |`);
  push(`| Best epoch | ${integer(s.best_epoch)} |`);
  push(`| Train time | ${duration(num(s.train_seconds))} |`);
  const stepMs = num(s.step_ms_median);
  push(`| Median step | ${Number.isFinite(stepMs) ? `${stepMs.toFixed(1)} ms` : NA} |`, "");

  push("## Training", "");
  const epochs = cleanEpochs(input.epochs ?? []);
  if (epochs.length === 0) {
    push("No epochs logged yet.", "");
  } else {
    files["plots/loss.svg"] = lineChartSvg(
      [{ name: "train loss", points: epochs.map((e) => [e.epoch, orNaN(e.loss)]) }],
      { title: "Training loss", xLabel: "epoch", yLabel: "loss" },
    );
    files["plots/lr.svg"] = lineChartSvg(
      [{ name: "learning rate", points: epochs.map((e) => [e.epoch, orNaN(e.lr)]) }],
      { title: "Learning rate", xLabel: "epoch", yLabel: "learning rate" },
    );
    const hasVal = epochs.some((e) =>
      Number.isFinite(orNaN(e.val_dice)) || Number.isFinite(orNaN(e.val_iou))
    );
    if (hasVal) {
      files["plots/val.svg"] = lineChartSvg(
        [
          { name: "val Dice", points: epochs.map((e) => [e.epoch, orNaN(e.val_dice)]) },
          { name: "val IoU", points: epochs.map((e) => [e.epoch, orNaN(e.val_iou)]) },
        ],
        { title: "Validation metrics", xLabel: "epoch", yLabel: "fraction", yRange: [0, 1] },
      );
    }
    push("![Training loss](plots/loss.svg)", "");
    push("![Learning rate](plots/lr.svg)", "");
    if (hasVal) push("![Validation metrics](plots/val.svg)", "");
    else push("No validation metrics logged.", "");

    // summary.json names the best epoch once training ends; before that, the latest record
    // flagged `best` is the best so far.
    const bestNo = num(s.best_epoch);
    const best = Number.isFinite(bestNo)
      ? epochs.find((e) => e.epoch === bestNo)
      : epochs.findLast((e) => e.best === true);
    const last = epochs[epochs.length - 1];
    push(`Best: ${best ? epochLine(best) : NA}. Last: ${epochLine(last)}.`, "");
  }

  push("## Overlays", "");
  const overlays = input.overlays ?? [];
  if (overlays.length === 0) {
    push("No overlays.", "");
  } else {
    const cols = Math.min(OVERLAY_COLUMNS, overlays.length);
    files["overlays.png"] = gridPng(overlays.map((o) => o.rgb), input.tileSize, cols);
    push("![Overlays](overlays.png)", "");
    push(
      `Green: ground-truth contour; red: predicted contour; yellow: both. ` +
        `Tiles left to right, top to bottom, ${cols} per row:`,
      "",
    );
    overlays.forEach((o, i) => push(`${i + 1}. ${md(o.key)}: Dice ${pct(num(o.dice))}`));
    push("");
  }

  push("## Config", "");
  const cfg = (input.configYaml ?? "").replace(/\s+$/, "");
  const f = fence(cfg);
  push("<details>", "<summary>Resolved config (config.yaml)</summary>", "");
  push(f + "yaml", ...(cfg ? [cfg] : []), f, "", "</details>");

  return { markdown: lines.join("\n") + "\n", files };
}

/**
 * Renders the report and writes it into `runDir`: the linked files first, report.md last, so
 * report.md never links a file that is not there yet. Each file is replaced atomically.
 */
export async function writeReport(runDir: string, input: ReportInput): Promise<void> {
  const { markdown, files } = renderReport(input);
  for (const [rel, content] of Object.entries(files)) {
    // The paths come from renderReport; this guards against a future edit escaping the run.
    if (isAbsolute(rel) || rel.split(/[\\/]/).includes("..")) {
      throw new Error(`writeReport: report file path must stay inside the run folder: ${rel}`);
    }
    await writeAtomic(join(runDir, rel), content);
  }
  await writeAtomic(join(runDir, "report.md"), markdown);
}
