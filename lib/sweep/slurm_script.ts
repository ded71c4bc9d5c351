/**
 * The text of a Slurm submission: `points.tsv` (one line per sweep point: what its array task
 * runs) and `sweep.sbatch` (one array job whose index k runs point k), plus the option parsing
 * and timing rules they need. Pure functions; lib/sweep/slurm.ts writes and submits them.
 *
 * Timing. A job of `--time T` gets three chances to stop at a checkpoint instead of being
 * killed: the run's own `--time-limit L` (default T - 2N: stop at the first epoch end after L),
 * Slurm's warning SIGUSR2 N seconds before T (`--signal=B:USR2@N`, N = T/10 within 60-600 s and
 * at most T/4; the script passes it to the run, which stops at its next epoch end), and at T
 * Slurm's SIGTERM (the run checkpoints after its current step). The first two exit 75 and the
 * task requeues itself (`scontrol requeue`), continuing with `--resume`; after SIGTERM (the hard
 * limit, or scancel) it does not, and the next `deno task sweep FILE --slurm` submits the point
 * again. `--run-time-limit` sets L directly (for epochs longer than the default margin, and for
 * tests, where Slurm's minute granularity is too coarse).
 */
import { InputError } from "../config/errors.ts";
import { formatDuration } from "../config/duration.ts";
import { type ResolvedSweep, runArgs, shellQuote, type SweepPoint } from "./spec.ts";

/** The `--slurm` options of `deno task sweep`. */
export interface SlurmOptions {
  /** `--partition`. */
  partition?: string;
  /** `--time` as given (Slurm's format) and in seconds (null: UNLIMITED/INFINITE). */
  time?: { text: string; seconds: number | null };
  /** `--cpus-per-task`. */
  cpusPerTask?: number;
  /** `--gpus-per-task`. */
  gpusPerTask?: number;
  /** `--mem`, e.g. `8G`. */
  mem?: string;
  /** At most this many array tasks at once (`--array=...%K`). */
  maxParallel?: number;
  /** Extra sbatch options, one `#SBATCH` line each, verbatim. */
  sbatchArgs?: string[];
  /** The run's `--time-limit` in seconds, instead of the one derived from `time`. */
  runTimeLimit?: number;
}

/**
 * Seconds of a Slurm time: `minutes`, `minutes:seconds`, `hours:minutes:seconds`, `days-hours`,
 * `days-hours:minutes`, `days-hours:minutes:seconds`; `UNLIMITED`/`INFINITE` give null.
 * Undefined for anything else (or zero).
 */
export function parseSlurmTime(text: string): number | null | undefined {
  const t = text.trim();
  if (/^(unlimited|infinite)$/i.test(t)) return null;
  const n = (s: string | undefined) => (s === undefined ? 0 : Number(s));
  let secs: number;
  let m = /^(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?$/.exec(t);
  if (m) secs = n(m[1]) * 86400 + n(m[2]) * 3600 + n(m[3]) * 60 + n(m[4]);
  else if ((m = /^(\d+)(?::(\d+)(?::(\d+))?)?$/.exec(t))) {
    secs = m[3] !== undefined ? n(m[1]) * 3600 + n(m[2]) * 60 + n(m[3]) : n(m[1]) * 60 + n(m[2]);
  } else return undefined;
  return secs > 0 ? secs : undefined;
}

/** Seconds of warning before the time limit: T/10 within 60-600 s, at most T/4; 300 without T. */
export function signalLead(jobSeconds: number | null | undefined): number {
  if (jobSeconds === null || jobSeconds === undefined) return 300;
  const n = Math.min(600, Math.max(60, Math.round(jobSeconds / 10)));
  return Math.max(1, Math.min(n, Math.floor(jobSeconds / 4)));
}

/** The run's `--time-limit` in seconds: `runTimeLimit`, else T - 2N, else none. */
export function runTimeLimit(o: SlurmOptions): number | null {
  if (o.runTimeLimit !== undefined) return o.runTimeLimit;
  const t = o.time?.seconds;
  if (t === null || t === undefined) return null;
  return t - 2 * signalLead(t);
}

/** `1-3,5,7-8` (sorted, ranges merged) with `%K` when a throttle is given. */
export function arraySpec(indices: readonly number[], maxParallel?: number): string {
  const xs = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < xs.length;) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    parts.push(j === i ? String(xs[i]) : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return parts.join(",") + (maxParallel ? `%${maxParallel}` : "");
}

/** A field of points.tsv: backslash, tab, newline and carriage return escaped (`\\ \t \n \r`). */
export function tsvField(s: string): string {
  return s.replaceAll("\\", "\\\\").replaceAll("\t", "\\t").replaceAll("\n", "\\n")
    .replaceAll("\r", "\\r");
}

/** The inverse of {@link tsvField} (what the job script's `printf %b` does). */
export function tsvUnescape(s: string): string {
  return s.replace(/\\([\\tnr])/g, (_, c) => ({ "\\": "\\", t: "\t", n: "\n", r: "\r" })[c as "t"]);
}

/** The columns of points.tsv before the run's arguments. */
export const POINTS_COLUMNS = ["index", "variant", "seed", "hash", "run_dir", "log"] as const;

/**
 * `points.tsv`: a `#` header, then one line per point: its index (= its array index), variant,
 * seed, config hash, run folder, log file and the `deno task run` arguments (lib/cli/run.ts,
 * one per field), all escaped by {@link tsvField}. Every point is listed, finished or not, so
 * the file stays the same across submissions of an unchanged sweep.
 */
export function pointsTsv(
  sw: ResolvedSweep,
  logOf: (p: SweepPoint) => string,
  extra: string[] = [],
): string {
  const lines = [`# ${[...POINTS_COLUMNS, "run arguments..."].join("\t")}`];
  for (const p of sw.points) {
    const fields = [String(p.index), p.variant, String(p.seed), p.hash, p.dir, logOf(p)];
    lines.push([...fields, ...runArgs(sw, p, extra)].map(tsvField).join("\t"));
  }
  return lines.join("\n") + "\n";
}

/** What the job script needs besides the options. */
export interface ScriptInput {
  /** The sweep's name (job name, comments and log lines). */
  sweepName: string;
  /** The sweep file as given (comments and messages). */
  sweepFile: string;
  /** Point indices to run (the array). */
  indices: number[];
  /** Absolute folder the relative paths of points.tsv are relative to (`--chdir`). */
  cwd: string;
  /** Absolute `<sweep dir>/slurm`: points.tsv, logs/, tasks/. */
  slurmDir: string;
  /** Absolute Deno binary of the submitting process. */
  deno: string;
  /** The submitting process's Deno cache folder; null leaves the node's default. */
  denoDir: string | null;
  /** Absolute lib/cli/run.ts. */
  runScript: string;
  /** The `--slurm` options. */
  options: SlurmOptions;
}

/**
 * A value on a `#SBATCH` line: sbatch splits those lines at blanks and reads double quotes, so
 * a value with blanks is quoted and one with a double quote or a line break is refused.
 */
function sbatchValue(what: string, v: string): string {
  if (/["\n\r]/.test(v)) {
    throw new InputError(`${what} ${JSON.stringify(v)} cannot go on an #SBATCH line`);
  }
  return /[\s'#\\]/.test(v) ? `"${v}"` : v;
}

/** `sweep.sbatch`: the array job script (see the module doc for its timing). */
export function sbatchScript(s: ScriptInput): string {
  const o = s.options;
  const lead = signalLead(o.time?.seconds);
  const limit = runTimeLimit(o);
  if (limit !== null && !(limit > 0)) {
    throw new InputError(
      `--time ${o.time?.text} leaves no time for the run (${lead} s warning); give a longer ` +
        "--time or --run-time-limit",
    );
  }
  const q = shellQuote;
  const sb = (line: string) => `#SBATCH ${line}`;
  const lines = [
    "#!/bin/bash",
    `# Slurm array job of sweep ${s.sweepName} (${s.sweepFile}), written by`,
    `# \`deno task sweep ${s.sweepFile} --slurm\`. Array index k runs point k of points.tsv next`,
    "# to this file with `deno task run ... --resume`. A run stopped by its --time-limit or by",
    "# Slurm's warning signal writes a checkpoint and exits 75; the task then requeues itself.",
    sb(`--job-name=${sbatchValue("the sweep name", `lvit-${s.sweepName}`)}`),
    sb(`--array=${arraySpec(s.indices, o.maxParallel)}`),
    sb(`--chdir=${sbatchValue("the working folder", s.cwd)}`),
    sb(`--output=${sbatchValue("the sweep folder", `${s.slurmDir}/logs/%A_%a.out`)}`),
    sb("--open-mode=append"),
    sb("--requeue"),
    // USR2, not USR1: Deno >= 2.9.2 opens its V8 inspector on SIGUSR1 (lib/run/runner.ts).
    sb(`--signal=B:USR2@${lead}`),
    ...(o.time ? [sb(`--time=${sbatchValue("--time", o.time.text)}`)] : []),
    ...(o.partition ? [sb(`--partition=${sbatchValue("--partition", o.partition)}`)] : []),
    ...(o.cpusPerTask ? [sb(`--cpus-per-task=${o.cpusPerTask}`)] : []),
    ...(o.gpusPerTask ? [sb(`--gpus-per-task=${o.gpusPerTask}`)] : []),
    ...(o.mem ? [sb(`--mem=${sbatchValue("--mem", o.mem)}`)] : []),
    ...(o.sbatchArgs ?? []).map((a) => {
      if (/[\n\r]/.test(a)) {
        throw new InputError(`--sbatch-arg ${JSON.stringify(a)}: no line breaks`);
      }
      return sb(a);
    }),
    "",
    "set -u",
    "# The Deno binary and cache of the submitting environment: nodes need no internet.",
    `DENO=${q(s.deno)}`,
    ...(s.denoDir ? [`export DENO_DIR=${q(s.denoDir)}`] : []),
    `RUN=${q(s.runScript)}`,
    `POINTS=${q(`${s.slurmDir}/points.tsv`)}`,
    `TASKS=${q(`${s.slurmDir}/tasks`)}`,
    `TIME_LIMIT=${limit === null ? "''" : q(formatDuration(limit))}`,
    `SWEEP=${q(s.sweepName)}`,
    `FILE=${q(s.sweepFile)}`,
    "",
    'id="${SLURM_ARRAY_TASK_ID:?submit this script with sbatch: it is an array job}"',
    'job="${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-0}}_${id}"',
    'line=""',
    'while IFS= read -r l || [ -n "$l" ]; do',
    '  if [ "${l%%$\'\\t\'*}" = "$id" ]; then line="$l"; break; fi',
    'done < "$POINTS"',
    'if [ -z "$line" ]; then echo "lvit sweep $SWEEP: no point $id in $POINTS" >&2; exit 2; fi',
    "# Tab-separated fields (empty ones kept), then the \\\\ \\t \\n \\r escapes undone by %b.",
    "f=()",
    "while :; do",
    '  case "$line" in',
    "    *$'\\t'*) f+=(\"${line%%$'\\t'*}\"); line=\"${line#*$'\\t'}\" ;;",
    '    *) f+=("$line"); break ;;',
    "  esac",
    "done",
    "u=()",
    'for x in "${f[@]}"; do printf -v y \'%b\' "$x"; u+=("$y"); done',
    'dir="${u[4]}"',
    'log="${u[5]}"',
    'args=("${u[@]:6}" --resume)',
    'if [ -n "$TIME_LIMIT" ]; then args+=(--time-limit "$TIME_LIMIT"); fi',
    'ckpt="$dir/checkpoints/last.safetensors"',
    "mark() { stat -c '%i %y %s' \"$ckpt\" 2>/dev/null || echo none; }",
    'before="$(mark)"',
    'mkdir -p "$(dirname "$log")" "$TASKS"',
    'echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) sweep $SWEEP, point $id: slurm job $job' +
    " (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname): $DENO run -A --unstable-webgpu" +
    ' $RUN ${args[*]}" >> "$log"',
    "# The run starts with SIGUSR2 ignored (its default action would kill a run that has not",
    "# installed its handler yet); the handler it installs before training replaces that.",
    "trap '' USR2",
    '"$DENO" run -A --unstable-webgpu "$RUN" "${args[@]}" >> "$log" 2>&1 &',
    "child=$!",
    "# Slurm's warning (--signal=B:...) reaches this shell only: pass it on. SIGTERM (the hard",
    "# limit, scancel) reaches the run from Slurm itself; a second one from here would make it",
    "# quit without its checkpoint, so this shell only waits for it.",
    "term=0",
    "trap 'kill -USR2 \"$child\" 2>/dev/null' USR2",
    "trap 'term=1' TERM",
    "while :; do",
    '  wait "$child"; rc=$?',
    '  kill -0 "$child" 2>/dev/null || break',
    "done",
    "# A trap that ended the wait leaves 128+signal; the run's own status is still there.",
    'if [ "$rc" -gt 128 ]; then wait "$child" 2>/dev/null; r=$?; [ "$r" -ne 127 ] && rc=$r; fi',
    'printf \'%s\\t%s\\t%s\\t%s\\t%s\\n\' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$job" ' +
    '"${SLURM_RESTART_COUNT:-0}" "$(hostname)" "$rc" >> "$TASKS/$id.tsv"',
    'if [ "$rc" -eq 75 ] && [ "$term" -eq 0 ]; then',
    "  # A run that wrote no checkpoint in a whole allocation would requeue forever.",
    '  if [ "$(mark)" = "$before" ]; then',
    '    echo "lvit sweep $SWEEP: point $id stopped without a new checkpoint; not requeued' +
    ' (give the job more --time)" | tee -a "$log" >&2',
    '    exit "$rc"',
    "  fi",
    '  echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) point $id stopped at a checkpoint (exit 75):' +
    ' requeueing slurm job $job" >> "$log"',
    '  if scontrol requeue "$job"; then exit 0; fi',
    '  echo "lvit sweep $SWEEP: cannot requeue $job; deno task sweep $FILE --slurm submits' +
    ' point $id again" | tee -a "$log" >&2',
    "fi",
    'exit "$rc"',
  ];
  return lines.join("\n") + "\n";
}
