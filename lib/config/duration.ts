/**
 * Durations for `--time-limit` and `train.time_limit`: `90s`, `45m`, `2h`, `1h30m`, `1d`,
 * `1d12h`, `1.5h`, or a plain number of seconds (`5400`, `0.5`). Components are days, hours,
 * minutes and seconds in that order, each at most once, optionally separated by spaces; the
 * total must be more than 0 seconds.
 */

/** What a duration looks like, in words (error messages and the schema's documentation). */
export const DURATION_PHRASE =
  'a duration such as "90s", "45m", "2h", "1h30m", "1d" or a number of seconds (more than 0)';

const NUM = String.raw`(\d+(?:\.\d+)?)`;
const UNITS = new RegExp(`^(?:${NUM}d)? *(?:${NUM}h)? *(?:${NUM}m)? *(?:${NUM}s)?$`);
const FACTORS = [86400, 3600, 60, 1];

/** The seconds of a duration (a string as above, or a number of seconds); null if invalid. */
export function parseDuration(v: unknown): number | null {
  let secs: number;
  if (typeof v === "number") secs = v;
  else if (typeof v === "string") {
    const t = v.trim().toLowerCase();
    if (/^\d+(?:\.\d+)?$/.test(t)) secs = Number(t);
    else {
      const m = UNITS.exec(t);
      if (!t || !m) return null;
      secs = FACTORS.reduce(
        (s, f, i) => s + (m[i + 1] === undefined ? 0 : Number(m[i + 1]) * f),
        0,
      );
    }
  } else return null;
  return Number.isFinite(secs) && secs > 0 ? secs : null;
}

/** A duration for messages: `1h30m`, `45s`, `0.001s`. */
export function formatDuration(seconds: number): string {
  let rest = seconds;
  let out = "";
  for (const [f, u] of [[86400, "d"], [3600, "h"], [60, "m"]] as const) {
    const n = Math.floor(rest / f);
    if (n > 0) {
      out += `${n}${u}`;
      rest -= n * f;
    }
  }
  const secs = Number(rest.toFixed(3));
  if (secs > 0 || !out) out += `${secs}s`;
  return out;
}
