/**
 * User errors of the configuration layer and the helpers their messages share.
 *
 * An `InputError` is bad input (a config file, data, a command-line argument): the CLIs print its
 * message alone, without a stack trace, and exit with code 2 (design.md 5). Messages are one
 * paragraph and start with `file:line:col:` when they point into a YAML file, or with
 * `--set a.b=c:` when a command-line override is at fault.
 */

/** A user error: reported as one paragraph without a stack trace, exit code 2. */
export class InputError extends Error {
  /** `message` is the whole report: one paragraph, with its position prefix if any. */
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}

/** Edit distance (insertions, deletions, substitutions), for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const sub = d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, sub);
    }
  }
  return d[a.length][b.length];
}

/**
 * `" (did you mean 'x'?)"` for the candidate closest to `key` when it is within a few edits
 * (at most max(2, length/3)), else `""`. Ties go to the earlier candidate.
 */
export function didYouMean(key: string, candidates: readonly string[]): string {
  let best = "", bestD = Infinity;
  for (const c of candidates) {
    const dd = distance(key, c);
    if (dd < bestD) [best, bestD] = [c, dd];
  }
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean '${best}'?)` : "";
}
