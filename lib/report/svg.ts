/**
 * Self-contained SVG 1.1 line charts for run reports (design.md 5: `report.md` + plots as SVG).
 *
 * The output is a pure function of the input and every number is written with a fixed format,
 * so a report rendered twice from the same run folder is byte-identical (reports can be diffed
 * and hashed). No fonts, scripts or external references: the file renders the same in a
 * browser, an image viewer and a Markdown preview.
 */

/** One named line of a chart: `[x, y]` points, drawn in the order given. */
export interface ChartSeries {
  /** The legend entry. */
  name: string;
  /** The data, `[x, y]` each. */
  points: [number, number][];
}

/** Chart labels and geometry. */
export interface ChartOptions {
  /** The heading above the plot. */
  title: string;
  /** The x axis label. */
  xLabel: string;
  /** The y axis label. */
  yLabel: string;
  /** Pixels; 640 by default. */
  width?: number;
  /** Pixels; 360 by default. */
  height?: number;
  /**
   * A fixed y domain (e.g. `[0, 1]` for Dice), so charts of different runs line up; data
   * outside it is clipped. Without it the domain is fitted to the data.
   */
  yRange?: [number, number];
}

// A colour-blind-friendly-enough categorical palette; series beyond it cycle.
const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
];

const FONT = 12;
// Average glyph advance of a sans-serif face at FONT px. Only used to lay out the legend and the
// left margin: an estimate keeps the output independent of the fonts installed anywhere.
const CHAR_W = 6.8;

/** Escapes text for use in SVG/XML character data and double-quoted attributes. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => {
    switch (c) {
      case "&":
        return "&amp;";
      case "<":
        return "&lt;";
      case ">":
        return "&gt;";
      case '"':
        return "&quot;";
      default:
        return "&#39;";
    }
  });
}

/** A pixel coordinate with two decimals; never "-0.00", never non-finite. */
function px(v: number): string {
  // Guard against absurd data (1e300, or a range that overflows) turning into "Infinity" or
  // "NaN" attributes, which would make the file invalid; the clip path hides anything this far
  // out anyway.
  const c = Number.isNaN(v) ? 0 : Math.max(-1e6, Math.min(1e6, v));
  const s = c.toFixed(2);
  return s === "-0.00" ? "0.00" : s;
}

/** The "nice" number (1, 2, 5 times a power of ten) nearest to, or at least, `x`. */
function niceNum(x: number, round: boolean): number {
  const exp = Math.floor(Math.log10(x));
  const base = Math.pow(10, exp);
  const f = x / base;
  let nf: number;
  if (round) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nf * base;
}

/** An axis: its domain, the tick values and a formatter shared by all its labels. */
interface Axis {
  lo: number;
  hi: number;
  ticks: number[];
  label: (v: number) => string;
}

/**
 * Fits an axis to `[min, max]` (both finite, min <= max). A degenerate range (one point, or a
 * constant series) is widened around its value so the line sits mid-chart instead of dividing
 * by zero. `integer` keeps the step at 1 or more, for epoch and step counts.
 */
function fitAxis(min: number, max: number, integer: boolean, fixed?: [number, number]): Axis {
  let lo: number, hi: number;
  const useFixed = fixed !== undefined && Number.isFinite(fixed[0]) &&
    Number.isFinite(fixed[1]) && fixed[0] < fixed[1];
  if (useFixed) {
    [lo, hi] = fixed!;
  } else {
    if (min === max) {
      const pad = integer ? 1 : min !== 0 ? Math.abs(min) * 0.1 : 1;
      min -= pad;
      max += pad;
    }
    lo = min;
    hi = max;
  }
  let step = niceNum(niceNum(hi - lo, false) / 4, true);
  if (integer && step < 1) step = 1;
  if (!useFixed) {
    // Snap the fitted domain outwards to whole steps so the first and last ticks sit on the
    // frame.
    lo = Math.floor(lo / step + 1e-9) * step;
    hi = Math.ceil(hi / step - 1e-9) * step;
  }
  const ticks: number[] = [];
  const k0 = Math.ceil(lo / step - 1e-9);
  const k1 = Math.floor(hi / step + 1e-9);
  for (let k = k0; k <= k1 && ticks.length < 50; k++) ticks.push(k * step);
  return { lo, hi, ticks, label: tickFormatter(step, Math.max(Math.abs(lo), Math.abs(hi))) };
}

/**
 * One format for all labels of an axis, chosen from the step so neighbouring ticks differ:
 * fixed-point normally, exponent form for learning-rate-sized or huge values where fixed-point
 * would need many zeros.
 */
function tickFormatter(step: number, maxAbs: number): (v: number) => string {
  const stepExp = Math.floor(Math.log10(step) + 1e-9);
  if (step < 1e-3 || maxAbs >= 1e6) {
    const digits = Math.max(0, Math.min(6, Math.floor(Math.log10(maxAbs) + 1e-9) - stepExp));
    return (v) => (Math.abs(v) < step * 1e-6 ? "0" : v.toExponential(digits));
  }
  const digits = Math.max(0, -stepExp);
  return (v) => {
    const s = (Math.abs(v) < step * 1e-6 ? 0 : v).toFixed(digits);
    return s.startsWith("-") && Number(s) === 0 ? s.slice(1) : s;
  };
}

/**
 * Renders a line chart as a standalone SVG 1.1 document: frame, grid lines and "nice" ticks on
 * both axes, axis labels, a legend and one polyline per series.
 *
 * Non-finite points (NaN, ±Infinity) are skipped and break the line there; a point with no
 * drawn neighbour gets a dot so it stays visible. With no finite point at all the chart shows
 * "no data". All text is XML-escaped. Output is deterministic.
 */
export function lineChartSvg(series: ChartSeries[], o: ChartOptions): string {
  const W = o.width ?? 640;
  const H = o.height ?? 360;

  // Domain of the finite data.
  let xMin = Infinity, xMax = -Infinity, yMin = Infinity, yMax = -Infinity;
  let allInt = true;
  for (const s of series) {
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      xMin = Math.min(xMin, x);
      xMax = Math.max(xMax, x);
      yMin = Math.min(yMin, y);
      yMax = Math.max(yMax, y);
      if (!Number.isInteger(x)) allInt = false;
    }
  }
  const empty = xMin > xMax;
  const xAxis = empty ? fitAxis(0, 1, false) : fitAxis(xMin, xMax, allInt);
  const yAxis = empty ? fitAxis(0, 1, false, o.yRange) : fitAxis(yMin, yMax, false, o.yRange);

  // Legend entries flow left to right under the title and wrap; the plot starts below them.
  const legendY0 = 42;
  const rowH = FONT + 6;
  const legend: { name: string; color: string; x: number; y: number }[] = [];
  {
    let x = 16, y = legendY0;
    series.forEach((s, i) => {
      const w = 22 + s.name.length * CHAR_W + 18;
      if (x > 16 && x + w > W - 16) {
        x = 16;
        y += rowH;
      }
      legend.push({ name: s.name, color: PALETTE[i % PALETTE.length], x, y });
      x += w;
    });
  }
  const legendBottom = legend.length ? legend[legend.length - 1].y + 6 : legendY0 - rowH + 6;
  const yTickChars = Math.max(1, ...yAxis.ticks.map((t) => yAxis.label(t).length));

  const left = 24 + yTickChars * CHAR_W + 10;
  const right = 20;
  const top = legendBottom + 12;
  const bottom = 48;
  const x0 = left, x1 = Math.max(left + 10, W - right);
  const y0 = top, y1 = Math.max(top + 10, H - bottom);
  const sx = (x: number) => x0 + ((x - xAxis.lo) / (xAxis.hi - xAxis.lo)) * (x1 - x0);
  const sy = (y: number) => y1 - ((y - yAxis.lo) / (yAxis.hi - yAxis.lo)) * (y1 - y0);

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${W}" height="${H}" ` +
      `viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="${FONT}">`,
  );
  out.push(`<title>${escapeXml(o.title)}</title>`);
  // The clip reaches a few pixels past the frame so dots and line ends on the domain's edge
  // (the first epoch, a Dice of exactly 1) are not cut in half.
  const pad = 4;
  out.push(
    `<defs><clipPath id="plot-area"><rect x="${px(x0 - pad)}" y="${px(y0 - pad)}" ` +
      `width="${px(x1 - x0 + 2 * pad)}" height="${px(y1 - y0 + 2 * pad)}"/></clipPath></defs>`,
  );
  // An opaque background: dark-themed Markdown viewers would otherwise hide the black text.
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(
    `<text x="${px(W / 2)}" y="22" text-anchor="middle" font-size="${FONT + 2}" ` +
      `font-weight="bold">${escapeXml(o.title)}</text>`,
  );

  // Grid lines and tick labels.
  out.push('<g stroke="#e0e0e0" stroke-width="1">');
  for (const t of xAxis.ticks) {
    out.push(`<line x1="${px(sx(t))}" y1="${px(y0)}" x2="${px(sx(t))}" y2="${px(y1)}"/>`);
  }
  for (const t of yAxis.ticks) {
    out.push(`<line x1="${px(x0)}" y1="${px(sy(t))}" x2="${px(x1)}" y2="${px(sy(t))}"/>`);
  }
  out.push("</g>");
  out.push(`<g fill="#333333" text-anchor="middle">`);
  for (const t of xAxis.ticks) {
    out.push(`<text x="${px(sx(t))}" y="${px(y1 + 16)}">${escapeXml(xAxis.label(t))}</text>`);
  }
  out.push("</g>");
  out.push(`<g fill="#333333" text-anchor="end">`);
  for (const t of yAxis.ticks) {
    out.push(`<text x="${px(x0 - 6)}" y="${px(sy(t) + 4)}">${escapeXml(yAxis.label(t))}</text>`);
  }
  out.push("</g>");
  out.push(
    `<rect x="${px(x0)}" y="${px(y0)}" width="${px(x1 - x0)}" height="${px(y1 - y0)}" ` +
      `fill="none" stroke="#333333" stroke-width="1"/>`,
  );
  out.push(
    `<text x="${px((x0 + x1) / 2)}" y="${px(H - 10)}" text-anchor="middle">` +
      `${escapeXml(o.xLabel)}</text>`,
  );
  const yLabelY = (y0 + y1) / 2;
  out.push(
    `<text x="14" y="${px(yLabelY)}" text-anchor="middle" ` +
      `transform="rotate(-90 14 ${px(yLabelY)})">${escapeXml(o.yLabel)}</text>`,
  );

  // Data, clipped to the frame (a fixed yRange may cut values off).
  out.push('<g clip-path="url(#plot-area)" fill="none" stroke-width="2">');
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    // Split at non-finite points so a NaN epoch shows as a gap rather than a false segment.
    const runs: [number, number][][] = [];
    let cur: [number, number][] = [];
    for (const [x, y] of s.points) {
      if (Number.isFinite(x) && Number.isFinite(y)) cur.push([sx(x), sy(y)]);
      else if (cur.length) {
        runs.push(cur);
        cur = [];
      }
    }
    if (cur.length) runs.push(cur);
    const lines = runs.filter((r) => r.length > 1);
    if (lines.length) {
      const d = lines.map((r) =>
        r.map(([x, y], j) => `${j === 0 ? "M" : "L"}${px(x)} ${px(y)}`).join(" ")
      ).join(" ");
      out.push(`<path d="${d}" stroke="${color}" stroke-linejoin="round"/>`);
    }
    for (const r of runs) {
      if (r.length !== 1) continue;
      out.push(`<circle cx="${px(r[0][0])}" cy="${px(r[0][1])}" r="3" fill="${color}"/>`);
    }
  });
  out.push("</g>");
  if (empty) {
    out.push(
      `<text x="${px((x0 + x1) / 2)}" y="${px((y0 + y1) / 2)}" text-anchor="middle" ` +
        `fill="#777777">no data</text>`,
    );
  }

  for (const e of legend) {
    const cy = e.y - 4;
    out.push(
      `<line x1="${px(e.x)}" y1="${px(cy)}" x2="${px(e.x + 18)}" y2="${px(cy)}" ` +
        `stroke="${e.color}" stroke-width="2"/>`,
    );
    out.push(`<text x="${px(e.x + 22)}" y="${px(e.y)}">${escapeXml(e.name)}</text>`);
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}
