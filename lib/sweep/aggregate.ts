/**
 * Sweep tables: per variant, the seeds done and mean ± sample sd of the run metrics, read from
 * each point's summary.json (design.md 5), plus the difference of mean test Dice against the
 * baseline variant. Dice and IoU are per-image means (the reference's metric) unless labelled
 * pooled (pixel counts summed over the test split, summary.json's `test.pooled`). Written into
 * the sweep folder as `sweep-summary.md`, `sweep-summary.csv`, `sweep-summary.svg` (a dot plot
 * of test Dice with ±sd bars) and `points.json` (every point with its status and run folder).
 *
 * The tables are a pure function of the summaries and the points' states (no clock, fixed
 * number formats), so rewriting them after every finished point is cheap and repeatable.
 */
import { join } from "node:path";
import type { Summary } from "../run/runner.ts";
import { writeAtomic } from "../run/folder.ts";
import { escapeXml } from "../report/svg.ts";
import { type ResolvedSweep, runCommandLine, type SweepPoint } from "./spec.ts";

/** Where a point stands. `unfinished`: a checkpoint but no summary (continued by --resume). */
export type PointStatus = "pending" | "unfinished" | "running" | "done" | "failed" | "interrupted";

/** One point and what happened to it in this sweep process. */
export interface PointState {
  point: SweepPoint;
  status: PointStatus;
  /** `<sweep dir>/logs/<variant>-seed<k>.log` */
  log: string;
  /** True when the point was already finished before this sweep process started. */
  skipped?: boolean;
  /** The run's exit code, once it ran. */
  exitCode?: number;
  /** Why it failed (the last lines of its output). */
  error?: string;
}

/** Count, mean and sample standard deviation (n - 1); null where undefined. */
export interface Stat {
  n: number;
  mean: number | null;
  sd: number | null;
}

/** Mean and sample sd (n - 1) of `xs`; the sd is null below 2 values, the mean below 1. */
export function meanSd(xs: readonly number[]): Stat {
  const n = xs.length;
  if (n === 0) return { n, mean: null, sd: null };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { n, mean, sd: null };
  const ss = xs.reduce((a, x) => a + (x - mean) ** 2, 0);
  return { n, mean, sd: Math.sqrt(ss / (n - 1)) };
}

/** One row of the sweep table. */
export interface VariantRow {
  variant: string;
  /** `key=value, ...` */
  label: string;
  baseline: boolean;
  /** Points with a summary.json, and all points of the variant. */
  done: number;
  total: number;
  valDice: Stat;
  valIou: Stat;
  testDice: Stat;
  testIou: Stat;
  /** Pooled test Dice and IoU (summary.json `test.pooled`; n/a for runs that predate it). */
  testDicePooled: Stat;
  testIouPooled: Stat;
  /** The distinct parameter counts (one unless seeds changed the model). */
  params: number[];
  /** The distinct MACs per image (summary.json `macs`; none for runs that predate it). */
  macs: number[];
  trainSeconds: Stat;
  /** Mean test Dice minus the baseline's (fractions); null when either is missing. */
  diff: number | null;
  /** Test Dice of each finished seed, in point order (for the plot). */
  testDiceValues: number[];
}

/** The rows of the table, one per variant in expansion order. */
export function aggregate(
  sw: Pick<ResolvedSweep, "variants" | "baseline">,
  points: readonly SweepPoint[],
  summaries: ReadonlyMap<number, Summary>,
): VariantRow[] {
  const rows = sw.variants.map((v): VariantRow => {
    const ps = points.filter((p) => p.variant === v.name);
    const ss = ps.map((p) => summaries.get(p.index)).filter((s): s is Summary => !!s);
    const nums = (f: (s: Summary) => number | null | undefined) =>
      ss.map(f).filter((x): x is number => typeof x === "number" && Number.isFinite(x));
    return {
      variant: v.name,
      label: v.label,
      baseline: v.name === sw.baseline,
      done: ss.length,
      total: ps.length,
      valDice: meanSd(nums((s) => s.val?.dice)),
      valIou: meanSd(nums((s) => s.val?.iou)),
      testDice: meanSd(nums((s) => s.test?.dice)),
      testIou: meanSd(nums((s) => s.test?.iou)),
      testDicePooled: meanSd(nums((s) => s.test?.pooled?.dice)),
      testIouPooled: meanSd(nums((s) => s.test?.pooled?.iou)),
      params: [...new Set(nums((s) => s.params))].sort((a, b) => a - b),
      macs: [...new Set(nums((s) => s.macs))].sort((a, b) => a - b),
      trainSeconds: meanSd(nums((s) => s.train_seconds)),
      diff: null,
      testDiceValues: nums((s) => s.test?.dice),
    };
  });
  const base = rows.find((r) => r.baseline)?.testDice.mean ?? null;
  for (const r of rows) {
    r.diff = base === null || r.testDice.mean === null ? null : r.testDice.mean - base;
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Formats.

/** `x.toFixed(d)` without a minus sign on a value that rounds to zero. */
export function fixed(x: number, d: number): string {
  const s = x.toFixed(d);
  return /^-0\.?0*$/.test(s) ? s.slice(1) : s;
}

/** `x` with `d` decimals and a sign: `+0.47`, `-0.87`. */
export const signed = (x: number, d: number): string => {
  const s = fixed(x, d);
  return s.startsWith("-") ? s : `+${s}`;
};

const NA = "n/a";

/** A fraction for the CSV (4 decimals) or "n/a". */
const frac = (x: number | null) => x === null ? NA : fixed(x, 4);

/** Mean ± sd as percentages with 2 decimals, for the Markdown table. */
function pctCell(s: Stat): string {
  if (s.mean === null) return NA;
  return `${fixed(100 * s.mean, 2)} ± ${s.sd === null ? NA : fixed(100 * s.sd, 2)}`;
}

/** GMACs per image with 3 decimals (several values joined by `/`; none: n/a). */
const gmacsText = (m: number[]) => m.length ? m.map((x) => fixed(x / 1e9, 3)).join("/") : NA;

const paramsText = (p: number[], grouped: boolean) => {
  const f = (x: number) => grouped ? x.toLocaleString("en-US") : String(x);
  return p.length === 0 ? NA : p.length === 1 ? f(p[0]) : `${f(p[0])}-${f(p[p.length - 1])}`;
};

/** A Markdown table cell: pipes escaped, line breaks as spaces. */
export const mdCell = (s: string): string => s.replaceAll("|", "\\|").replaceAll("\n", " ");

/** A CSV cell, quoted where it holds a quote, comma or line break. */
export function csvCell(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** The CSV columns, in order. */
export const CSV_COLUMNS = [
  "variant",
  "settings",
  "baseline",
  "seeds_done",
  "seeds_total",
  "val_dice_mean",
  "val_dice_sd",
  "val_iou_mean",
  "val_iou_sd",
  "test_dice_mean",
  "test_dice_sd",
  "test_iou_mean",
  "test_iou_sd",
  "test_dice_pooled_mean",
  "test_dice_pooled_sd",
  "test_iou_pooled_mean",
  "test_iou_pooled_sd",
  "params",
  "gmacs",
  "train_seconds_mean",
  "test_dice_diff_vs_baseline",
] as const;

/**
 * `sweep-summary.csv`: one row per variant; metrics as fractions with 4 decimals, sd of
 * fewer than 2 seeds and anything without data as `n/a`, the diff signed. `*_dice_*` and
 * `*_iou_*` are per-image means; `test_*_pooled_*` the pooled scores.
 */
export function summaryCsv(rows: readonly VariantRow[]): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const r of rows) {
    lines.push(
      [
        r.variant,
        r.label,
        String(r.baseline),
        String(r.done),
        String(r.total),
        frac(r.valDice.mean),
        frac(r.valDice.sd),
        frac(r.valIou.mean),
        frac(r.valIou.sd),
        frac(r.testDice.mean),
        frac(r.testDice.sd),
        frac(r.testIou.mean),
        frac(r.testIou.sd),
        frac(r.testDicePooled.mean),
        frac(r.testDicePooled.sd),
        frac(r.testIouPooled.mean),
        frac(r.testIouPooled.sd),
        paramsText(r.params, false),
        gmacsText(r.macs),
        r.trainSeconds.mean === null ? NA : fixed(r.trainSeconds.mean, 2),
        r.diff === null ? NA : signed(r.diff, 4),
      ].map(csvCell).join(","),
    );
  }
  return lines.join("\n") + "\n";
}

/** `sweep-summary.md`: the variant table, the plot and every point with its status. */
export function summaryMarkdown(
  sw: ResolvedSweep,
  rows: readonly VariantRow[],
  states: readonly PointState[],
  summaries: ReadonlyMap<number, Summary>,
): string {
  const count = (st: PointState["status"]) => states.filter((s) => s.status === st).length;
  const seeds = new Set(sw.points.map((p) => p.seed)).size;
  const out: string[] = [`# Sweep ${sw.spec.name}`, ""];
  if (sw.spec.description) out.push(sw.spec.description.trim(), "");
  out.push(
    `Base experiment \`${sw.spec.base}\`, sweep file \`${sw.spec.file}\`: ${sw.points.length} ` +
      `points (${sw.variants.length} variants, ${seeds} seed${seeds === 1 ? "" : "s"}); ` +
      `${summaries.size} done, ${count("failed")} failed, ${count("running")} running.`,
    "",
    "Mean ± sample sd over the finished seeds (n/a below 2); Dice and IoU in %. Per-image: " +
      "each image's score averaged over the split (the reference's metric, val Dice selects the " +
      "checkpoint); pooled: one score from the pixel counts summed over the whole test split " +
      "(as GuideDecoder and its forks report). Δ test Dice: mean per-image test Dice minus the " +
      `baseline \`${sw.baseline}\`'s, in percentage points.`,
    "",
    "| variant | settings | seeds | val Dice (per-image) | val IoU (per-image) | " +
      "test Dice (per-image) | test IoU (per-image) | test Dice (pooled) | test IoU (pooled) | " +
      "params | GMACs | train s | Δ test Dice |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const r of rows) {
    const cells = [
      r.baseline ? `**${r.variant}** (baseline)` : r.variant,
      r.label,
      `${r.done}/${r.total}`,
      pctCell(r.valDice),
      pctCell(r.valIou),
      pctCell(r.testDice),
      pctCell(r.testIou),
      pctCell(r.testDicePooled),
      pctCell(r.testIouPooled),
      paramsText(r.params, true),
      gmacsText(r.macs),
      r.trainSeconds.mean === null ? NA : fixed(r.trainSeconds.mean, 1),
      r.baseline ? "—" : r.diff === null ? NA : signed(100 * r.diff, 2),
    ];
    out.push(`| ${cells.map(mdCell).join(" | ")} |`);
  }
  out.push("", "![test Dice per variant](sweep-summary.svg)", "", "## Points", "");
  out.push(
    "| # | variant | seed | status | test Dice (per-image) | test Dice (pooled) | hash | " +
      "run folder | log |",
  );
  out.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const s of states) {
    const p = s.point;
    const sum = summaries.get(p.index);
    const cells = [
      String(p.index),
      p.variant,
      String(p.seed),
      sum ? (s.skipped ? "done (earlier)" : "done") : s.status,
      sum ? fixed(100 * sum.test.dice, 2) : "",
      typeof sum?.test?.pooled?.dice === "number" ? fixed(100 * sum.test.pooled.dice, 2) : "",
      p.hash,
      `\`${p.dir}\``,
      `\`${s.log}\``,
    ];
    out.push(`| ${cells.map(mdCell).join(" | ")} |`);
  }
  const failed = states.filter((s) => s.status === "failed");
  if (failed.length) {
    out.push("", "## Failed points", "");
    for (const s of failed) {
      out.push(
        `- ${s.point.variant} seed ${s.point.seed} (exit ${
          s.exitCode ?? "?"
        }, log \`${s.log}\`): ` +
          (s.error ?? "").replaceAll("\n", " "),
      );
    }
  }
  out.push(
    "",
    "Rerun one point alone with the command in `points.json`; `deno task sweep " +
      `${sw.spec.file} --resume\` runs the missing ones.`,
  );
  return out.join("\n") + "\n";
}

/** Numbers in SVG attributes: at most 2 decimals, no trailing zeros, so output is stable. */
const px = (x: number) => fixed(Math.round(x * 100) / 100, 2).replace(/\.?0+$/, "") || "0";

/** A 1-2-5 step giving about `n` intervals over `span`. */
function niceStep(span: number, n: number): number {
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/**
 * `sweep-summary.svg`: one row per variant; hollow dots are single seeds, the filled dot the
 * mean with a ±sd bar; a dashed line marks the baseline's mean. The x axis is test Dice in %,
 * fitted to the data (within 0-100).
 */
export function summarySvg(title: string, rows: readonly VariantRow[]): string {
  const FONT = 12, CHAR_W = 6.8, ROW = 26, W = 640;
  const nameW = Math.max(60, ...rows.map((r) => r.variant.length * CHAR_W));
  const left = 16 + nameW + 12, right = 24, top = 44, bottom = 46;
  const H = top + Math.max(1, rows.length) * ROW + bottom;
  const vals: number[] = [];
  for (const r of rows) {
    vals.push(...r.testDiceValues);
    if (r.testDice.mean !== null) {
      vals.push(r.testDice.mean - (r.testDice.sd ?? 0), r.testDice.mean + (r.testDice.sd ?? 0));
    }
  }
  let lo = vals.length ? Math.max(0, Math.min(...vals)) : 0;
  let hi = vals.length ? Math.min(1, Math.max(...vals)) : 1;
  if (hi - lo < 0.02) {
    [lo, hi] = [Math.max(0, (lo + hi) / 2 - 0.01), Math.min(1, (lo + hi) / 2 + 0.01)];
  }
  if (hi - lo < 0.02) [lo, hi] = hi >= 1 ? [0.98, 1] : [0, 0.02];
  const step = niceStep(hi - lo, 5);
  lo = Math.max(0, Math.floor(lo / step + 1e-9) * step);
  hi = Math.min(1, Math.ceil(hi / step - 1e-9) * step);
  const x0 = left, x1 = W - right, y0 = top, y1 = H - bottom;
  const sx = (v: number) => x0 + ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (x1 - x0);
  const rowY = (i: number) => y0 + (i + 0.5) * ROW;
  const decimals = Math.max(0, -Math.floor(Math.log10(step * 100) + 1e-9));
  const o: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${W}" height="${px(H)}" ` +
    `viewBox="0 0 ${W} ${px(H)}" font-family="sans-serif" font-size="${FONT}">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${W}" height="${px(H)}" fill="#ffffff"/>`,
    `<text x="${px(W / 2)}" y="24" text-anchor="middle" font-size="${FONT + 2}" ` +
    `font-weight="bold">${escapeXml(title)}</text>`,
    '<g stroke="#e0e0e0" stroke-width="1">',
  ];
  const ticks: number[] = [];
  for (let k = 0; lo + k * step <= hi + step * 1e-6; k++) ticks.push(lo + k * step);
  for (const t of ticks) {
    o.push(`<line x1="${px(sx(t))}" y1="${px(y0)}" x2="${px(sx(t))}" y2="${px(y1)}"/>`);
  }
  rows.forEach((_, i) => {
    o.push(`<line x1="${px(x0)}" y1="${px(rowY(i))}" x2="${px(x1)}" y2="${px(rowY(i))}"/>`);
  });
  o.push("</g>", '<g fill="#333333" text-anchor="middle">');
  for (const t of ticks) {
    o.push(`<text x="${px(sx(t))}" y="${px(y1 + 16)}">${fixed(100 * t, decimals)}</text>`);
  }
  o.push("</g>");
  o.push(
    `<rect x="${px(x0)}" y="${px(y0)}" width="${px(x1 - x0)}" height="${px(y1 - y0)}" ` +
      `fill="none" stroke="#333333" stroke-width="1"/>`,
    `<text x="${px((x0 + x1) / 2)}" y="${px(H - 10)}" text-anchor="middle">test Dice ` +
      `(per-image mean, %), mean ± sd over seeds; hollow: single seeds</text>`,
  );
  const base = rows.find((r) => r.baseline);
  if (base?.testDice.mean != null) {
    const bx = px(sx(base.testDice.mean));
    o.push(
      `<line x1="${bx}" y1="${px(y0)}" x2="${bx}" y2="${px(y1)}" stroke="#d62728" ` +
        `stroke-width="1" stroke-dasharray="4 3"/>`,
    );
  }
  rows.forEach((r, i) => {
    const y = rowY(i);
    o.push(
      `<text x="${px(x0 - 8)}" y="${px(y + 4)}" text-anchor="end" fill="#333333"` +
        `${r.baseline ? ' font-weight="bold"' : ""}>${escapeXml(r.variant)}</text>`,
    );
    if (r.testDice.mean === null) {
      o.push(`<text x="${px(x0 + 6)}" y="${px(y + 4)}" fill="#7f7f7f">no finished seed</text>`);
      return;
    }
    // Seeds spread a little vertically so equal values stay distinguishable.
    r.testDiceValues.forEach((v, k) => {
      const dy = (k - (r.testDiceValues.length - 1) / 2) * 3;
      o.push(
        `<circle cx="${px(sx(v))}" cy="${px(y + dy)}" r="3" fill="none" stroke="#7f7f7f"/>`,
      );
    });
    const m = r.testDice.mean, sd = r.testDice.sd;
    if (sd !== null) {
      const a = px(sx(m - sd)), b = px(sx(m + sd));
      o.push(
        `<g stroke="#1f77b4" stroke-width="1.5"><line x1="${a}" y1="${px(y)}" x2="${b}" ` +
          `y2="${px(y)}"/><line x1="${a}" y1="${px(y - 5)}" x2="${a}" y2="${px(y + 5)}"/>` +
          `<line x1="${b}" y1="${px(y - 5)}" x2="${b}" y2="${px(y + 5)}"/></g>`,
      );
    }
    o.push(`<circle cx="${px(sx(m))}" cy="${px(y)}" r="4.5" fill="#1f77b4"/>`);
  });
  o.push("</svg>");
  return o.join("\n") + "\n";
}

/** `points.json`: the sweep and every point with its status, run folder, log and command. */
export function pointsJson(
  sw: ResolvedSweep,
  states: readonly PointState[],
  summaries: ReadonlyMap<number, Summary>,
): string {
  return JSON.stringify(
    {
      sweep: sw.spec.name,
      file: sw.spec.file,
      base: sw.spec.base,
      out: sw.out,
      baseline: sw.baseline,
      points: states.map((s) => {
        const p = s.point;
        const sum = summaries.get(p.index);
        return {
          index: p.index,
          variant: p.variant,
          seed: p.seed,
          settings: Object.fromEntries(p.settings.map((st) => [st.key, st.value])),
          status: sum ? "done" : s.status,
          ...(s.skipped ? { skipped: true } : {}),
          hash: p.hash,
          dir: p.dir,
          log: s.log,
          ...(s.exitCode !== undefined ? { exit_code: s.exitCode } : {}),
          ...(s.error !== undefined ? { error: s.error } : {}),
          ...(sum ? { test_dice: sum.test.dice, val_dice: sum.val.dice } : {}),
          ...(typeof sum?.test?.pooled?.dice === "number"
            ? { test_dice_pooled: sum.test.pooled.dice }
            : {}),
          command: runCommandLine(sw, p),
        };
      }),
    },
    null,
    2,
  ) + "\n";
}

/** The summary.json of every point that has one (keyed by point index). */
export async function readSummaries(points: readonly SweepPoint[]): Promise<Map<number, Summary>> {
  const out = new Map<number, Summary>();
  for (const p of points) {
    try {
      out.set(p.index, JSON.parse(await Deno.readTextFile(p.paths.summary)));
    } catch {
      // Missing (not finished) or unreadable: the point does not count as done.
    }
  }
  return out;
}

/** Reads the summaries and rewrites the four sweep files atomically; returns the rows. */
export async function writeSweepOutputs(
  sw: ResolvedSweep,
  states: readonly PointState[],
): Promise<VariantRow[]> {
  const summaries = await readSummaries(sw.points);
  const rows = aggregate(sw, sw.points, summaries);
  const d = sw.sweepDir;
  await writeAtomic(join(d, "points.json"), pointsJson(sw, states, summaries));
  await writeAtomic(join(d, "sweep-summary.csv"), summaryCsv(rows));
  await writeAtomic(
    join(d, "sweep-summary.svg"),
    summarySvg(`${sw.spec.name}: test Dice per variant`, rows),
  );
  await writeAtomic(join(d, "sweep-summary.md"), summaryMarkdown(sw, rows, states, summaries));
  return rows;
}
