/**
 * Where runs stand, from their run folders alone (`deno task status`, lib/cli/status.ts): epoch
 * done/total, best epoch and validation Dice (metrics.jsonl), state and an ETA.
 *
 * A run folder is a folder holding config.yaml and metrics.jsonl (or state.json: a run still
 * in its setup). States, from summary.json, checkpoints/last.safetensors and the run's lock and
 * state record (lib/run/state.ts):
 * - `finished`: summary.json exists.
 * - `running`: a live process holds run.lock (where the file system cannot tell, a state.json
 *   saying `running` is taken at its word and the note says so). `deno task eval`'s shared hold
 *   is not a run, and a process refused the folder (issue 15) wrote nothing.
 * - `paused`: stopped at a checkpoint (the time limit, SIGINT/SIGTERM), or its process died
 *   without a word (kill -9: the record says running, nobody holds the lock) after writing
 *   checkpoints/last.safetensors; `--resume` continues.
 * - `failed`: the process ended with an error (state.json holds the message), or died before
 *   its first checkpoint.
 * - `fresh`: nothing trained yet (no epoch, no checkpoint, no live process).
 *
 * ETA: the median wall time of the logged epochs (validation included) times the epochs left,
 * min(epochs - done, what early stopping allows: the trainer stops after epoch
 * (best epoch, or 1) + patience + 1); `epochs_left_by` says which bound it is. The final test
 * evaluation is not included.
 */
import { join } from "node:path";
import { parseDocument } from "../deps.ts";
import { InputError } from "../config/errors.ts";
import { fileExists, readMetrics } from "./folder.ts";
import { lockHeld, readRunState, STATE_FILE } from "./state.ts";
import { clock } from "./progress.ts";

/** The state of a run, as `deno task status` shows it. */
export type RunStateName = "finished" | "running" | "paused" | "failed" | "fresh";

/** One run folder's status (`deno task status --json` prints a list of these). */
export interface RunStatus {
  /** The run folder. */
  path: string;
  /** What the run is doing, or how it ended. */
  state: RunStateName;
  /** Why, where the state alone does not say: "time limit", "interrupted", the error, ... */
  note: string | null;
  /** Epochs recorded in metrics.jsonl. */
  epochs_done: number;
  /** train.epochs of config.yaml; null when it cannot be read. */
  epochs_total: number | null;
  /** The 1-based epoch of the best checkpoint; null before one was saved. */
  best_epoch: number | null;
  /** That epoch's validation Dice; null without one. */
  best_val_dice: number | null;
  /** Median wall time of the recorded epochs, seconds; null before the first. */
  epoch_seconds_median: number | null;
  /** Epochs at most still to train; 0 when finished; null when unknown. */
  epochs_left: number | null;
  /** What bounds epochs_left: the epoch count or early stopping's patience. */
  epochs_left_by: "epochs" | "patience" | null;
  /** epoch_seconds_median x epochs_left (training only); null when finished or unknown. */
  eta_seconds: number | null;
  /** The process of state.json, when there is one. */
  pid: number | null;
  /** That process's host name, when recorded. */
  host: string | null;
}

/** Whether `dir` is a run folder: config.yaml plus metrics.jsonl or state.json. */
export async function isRunFolder(dir: string): Promise<boolean> {
  return await fileExists(join(dir, "config.yaml")) &&
    (await fileExists(join(dir, "metrics.jsonl")) || await fileExists(join(dir, STATE_FILE)));
}

/**
 * The run folders at or below `root`, sorted (a run folder's own subfolders are not searched;
 * symbolic links are not followed). A missing `root` is bad input.
 */
export async function findRunFolders(root: string): Promise<string[]> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(root);
  } catch {
    throw new InputError(`${root}: no such folder (pass a run folder or a folder of runs)`);
  }
  if (!st.isDirectory) {
    throw new InputError(`${root}: not a folder (pass a run folder or a folder of runs)`);
  }
  const out: string[] = [];
  const walk = async (dir: string) => {
    if (await isRunFolder(dir)) {
      out.push(dir);
      return;
    }
    const subs: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) if (e.isDirectory) subs.push(e.name);
    } catch {
      return; // unreadable: nothing to report there
    }
    for (const s of subs.sort()) await walk(join(dir, s));
  };
  await walk(root);
  return out.sort();
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** train.epochs and train.patience of a run's config.yaml (null where unreadable). */
async function recipeOf(dir: string): Promise<{ epochs: number | null; patience: number | null }> {
  try {
    const cfg = parseDocument(await Deno.readTextFile(join(dir, "config.yaml"))).toJS();
    const t = cfg?.train ?? {};
    const int = (v: unknown) => Number.isInteger(v) && (v as number) > 0 ? v as number : null;
    return { epochs: int(t.epochs), patience: int(t.patience) };
  } catch {
    return { epochs: null, patience: null };
  }
}

/** The status of one run folder (see the module doc). */
export async function runStatus(dir: string): Promise<RunStatus> {
  const recipe = await recipeOf(dir);
  const epochs = (await readMetrics(join(dir, "metrics.jsonl")))
    .filter((m) => m.kind === "epoch" && typeof m.epoch === "number");
  const done = epochs.length ? Math.max(...epochs.map((m) => m.epoch as number)) : 0;
  const best = epochs.filter((m) => m.best === true).at(-1);
  const rec = await readRunState(dir);
  const hasSummary = await fileExists(join(dir, "summary.json"));
  const hasLast = await fileExists(join(dir, "checkpoints", "last.safetensors"));

  const held = hasSummary ? false : await lockHeld(dir);
  let state: RunStateName;
  let note: string | null = null;
  if (hasSummary) state = "finished";
  else if (held) state = "running";
  else if (rec?.state === "running") {
    if (held === null) {
      state = "running";
      note = `pid ${rec.pid}${rec.host ? ` on ${rec.host}` : ""}; the lock cannot be checked`;
    } else if (hasLast) {
      state = "paused";
      note = `process ${rec.pid} ended without recording why (killed?)`;
    } else {
      state = "failed";
      note = `process ${rec.pid} died before its first checkpoint`;
    }
  } else if (rec?.state === "failed") {
    state = "failed";
    note = rec.error ?? null;
  } else if (hasLast) {
    state = "paused";
    if (rec?.state === "paused") note = rec.reason === "time_limit" ? "time limit" : "interrupted";
  } else if (done > 0) {
    state = "failed";
    note = "epochs were logged but checkpoints/last.safetensors is missing";
  } else state = "fresh";

  const secs = median(
    epochs.map((m) => m.seconds).filter((s): s is number => typeof s === "number"),
  );
  let left: number | null = null;
  let by: RunStatus["epochs_left_by"] = null;
  if (state === "finished") left = 0;
  else if (recipe.epochs !== null) {
    left = Math.max(0, recipe.epochs - done);
    by = "epochs";
    if (recipe.patience !== null) {
      // The trainer stops after epoch e once e - (best epoch, or 1) > patience.
      const bestEpoch = typeof best?.epoch === "number" ? best.epoch : 1;
      const byPatience = Math.max(0, bestEpoch + recipe.patience + 1 - done);
      if (byPatience < left) [left, by] = [byPatience, "patience"];
    }
  }
  return {
    path: dir,
    state,
    note,
    epochs_done: done,
    epochs_total: recipe.epochs,
    best_epoch: typeof best?.epoch === "number" ? best.epoch : null,
    best_val_dice: typeof best?.val_dice === "number" ? best.val_dice : null,
    epoch_seconds_median: secs,
    epochs_left: left,
    epochs_left_by: by,
    eta_seconds: state !== "finished" && secs !== null && left !== null ? secs * left : null,
    pid: rec?.pid ?? null,
    host: rec?.host ?? null,
  };
}

/** The statuses of every run folder at or below `root`. */
export async function statusOf(root: string): Promise<RunStatus[]> {
  const out: RunStatus[] = [];
  for (const dir of await findRunFolders(root)) out.push(await runStatus(dir));
  return out;
}

/** The statuses as a plain-text table, one row per run (notes cut to their first line). */
export function formatStatus(rows: RunStatus[]): string {
  const head = ["run", "epoch", "best", "val dice", "state", "ETA", "note"];
  const cut = (s: string) => {
    const line = s.split("\n")[0];
    return line.length > 80 ? `${line.slice(0, 77)}...` : line;
  };
  const body = rows.map((r) => [
    r.path,
    `${r.epochs_done}/${r.epochs_total ?? "?"}`,
    r.best_epoch === null ? "-" : String(r.best_epoch),
    r.best_val_dice === null ? "-" : r.best_val_dice.toFixed(4),
    r.state,
    r.state === "finished"
      ? "-"
      : r.eta_seconds === null
      ? "?"
      : `${clock(r.eta_seconds)}${r.epochs_left_by === "patience" ? " (patience)" : ""}`,
    r.note ? cut(r.note) : "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cells) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join("  ").trimEnd()
  ).join("\n");
}
