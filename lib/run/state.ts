/**
 * Who works on a run folder and how its last process ended, in two small files:
 *
 * - `run.lock`: an empty file that the process working on the run holds an exclusive advisory
 *   lock on (`Deno.FsFile.lock`: flock on Unix, LockFileEx on Windows) from the moment it takes
 *   the folder until it exits. The operating system drops the lock when the process ends,
 *   however it ends (kill -9 and out-of-memory kills included), so "the lock is held" is
 *   "a live process is writing this run", with no pid reuse or host-name guessing; on network
 *   file systems it is as good as their locking. The file is never renamed or rewritten, so
 *   the lock always sits on the same file. Today a second process finding it held only warns;
 *   the exclusive per-folder lock of design.md 5 (issue 15) is meant to refuse there instead.
 * - `state.json`: the record, always replaced atomically (lib/io/atomic.ts):
 *   `{ "format", "state", "pid", "host", "started", "updated", "reason"?, "error"? }` where
 *   `state` is `running` (written when a process takes the folder), `paused` (stopped at a
 *   checkpoint; `reason` is `time_limit`, exit 75, or `interrupted`, SIGINT/SIGTERM, exit 130),
 *   `failed` (`error` holds the message) or `finished` (summary.json was written).
 *
 * A record saying `running` while nobody holds the lock is a process that died without a
 * word. `deno task status` (lib/run/status.ts) reads both.
 */
import { join } from "node:path";
import { writeAtomic } from "../io/atomic.ts";

/** The lock file's name inside a run folder. */
export const LOCK_FILE = "run.lock";
/** The state record's name inside a run folder. */
export const STATE_FILE = "state.json";
const FORMAT = "lvit-deno-run-state-v1";

/** What a process records about a run. */
export type RecordedState = "running" | "paused" | "failed" | "finished";

/** The content of state.json. */
export interface RunStateRecord {
  format: typeof FORMAT;
  state: RecordedState;
  /** The process that wrote the record. */
  pid: number;
  /** Its host name; null where it cannot be read without asking for a permission. */
  host: string | null;
  /** When that process took the folder (ISO 8601). */
  started: string;
  /** When the record was written (ISO 8601). */
  updated: string;
  /** `paused`: why. */
  reason?: "time_limit" | "interrupted";
  /** `failed`: the error's message. */
  error?: string;
}

/** The host name where the permission to read it is granted (never prompts), else null. */
function hostName(): string | null {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      return Deno.hostname();
    }
  } catch {
    // No answer: unknown.
  }
  return null;
}

/**
 * Whether a live process holds the run folder's lock: true or false, or null when there is
 * no lock file or the file system cannot say (then only the record is left to go by).
 */
export async function lockHeld(dir: string): Promise<boolean | null> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(join(dir, LOCK_FILE), { read: true });
  } catch {
    return null;
  }
  try {
    // A shared lock fails only while a writer holds its exclusive one; let go of it at once.
    const got = await f.tryLock(false);
    if (got) await f.unlock();
    return !got;
  } catch {
    return null;
  } finally {
    f.close();
  }
}

/** The record of a run folder, or null when there is none (or it cannot be read). */
export async function readRunState(dir: string): Promise<RunStateRecord | null> {
  try {
    const r = JSON.parse(await Deno.readTextFile(join(dir, STATE_FILE)));
    return r && r.format === FORMAT && typeof r.state === "string" && typeof r.pid === "number"
      ? r as RunStateRecord
      : null;
  } catch {
    return null;
  }
}

/**
 * This process's hold on one run folder: `claim` takes the lock and records `running`, `end`
 * or `fail` record the outcome and let go. Neither writes anything unless this process claimed
 * the folder (a process that refused a folder must not overwrite the record of its owner).
 */
export class RunStateWriter {
  private dir: string | null = null;
  private lock: Deno.FsFile | null = null;
  private started = "";

  /**
   * Takes the folder `dir`: locks run.lock and records `running`. Returns a warning when
   * another live process holds the lock (this one then goes on without it).
   */
  async claim(dir: string): Promise<string | null> {
    this.dir = dir;
    this.started = new Date().toISOString();
    const f = await Deno.open(join(dir, LOCK_FILE), { read: true, write: true, create: true });
    let warning: string | null = null;
    // `deno task status` holds a shared lock for an instant while it looks: try a few times.
    let got = false;
    for (let i = 0; i < 5 && !(got = await f.tryLock(true)); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (got) this.lock = f;
    else {
      f.close();
      const other = await readRunState(dir);
      warning = `warning: another process${other ? ` (pid ${other.pid})` : ""} holds ` +
        `${join(dir, LOCK_FILE)}: two processes writing one run folder spoil it`;
    }
    await this.write("running");
    return warning;
  }

  /** Records how the run ended (finished, or paused at a checkpoint and why) and lets go. */
  async end(state: "finished" | "paused", reason?: "time_limit" | "interrupted"): Promise<void> {
    if (!this.dir) return;
    try {
      await this.write(state, reason ? { reason } : {});
    } finally {
      this.release();
    }
  }

  /** Records a failure and lets go; never throws (the original error is what matters). */
  async fail(e: unknown): Promise<void> {
    if (!this.dir) return;
    const error = (e instanceof Error ? e.message : String(e)).slice(0, 2000);
    await this.write("failed", { error }).catch(() => {});
    this.release();
  }

  private release() {
    try {
      this.lock?.close(); // closing the file drops its lock
    } catch {
      // Already closed.
    }
    this.lock = null;
    this.dir = null;
  }

  private async write(state: RecordedState, extra: Partial<RunStateRecord> = {}): Promise<void> {
    const rec: RunStateRecord = {
      format: FORMAT,
      state,
      pid: Deno.pid,
      host: hostName(),
      started: this.started,
      updated: new Date().toISOString(),
      ...extra,
    };
    await writeAtomic(join(this.dir!, STATE_FILE), JSON.stringify(rec, null, 2) + "\n");
  }
}
