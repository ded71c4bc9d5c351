/**
 * Who works on a run folder and how its last process ended, in two small files:
 *
 * - `run.lock`: an empty file that the process working on the run holds an exclusive advisory
 *   lock on (`Deno.FsFile.lock`: flock on Unix, LockFileEx on Windows) from the moment it takes
 *   the folder until it exits. The operating system drops the lock when the process ends,
 *   however it ends (kill -9 and out-of-memory kills included), so "the lock is held" is
 *   "a live process is writing this run", with no pid reuse or host-name guessing; on network
 *   file systems it is as good as their locking. The file is never renamed, rewritten or
 *   deleted (`--force` empties the folder around it), so the lock always sits on the same file.
 *   One writer per folder (design.md 5): a second process finding it held is refused
 *   ({@link RunLockedError}, exit 2) with the holder's pid and host from state.json. `deno task
 *   eval` holds a shared lock while it reads a run and writes its eval/ files: training refuses
 *   a folder being evaluated and eval refuses one being trained; evaluations may overlap.
 * - `state.json`: the record, always replaced atomically (lib/io/atomic.ts):
 *   `{ "format", "state", "pid", "host", "started", "updated", "reason"?, "error"? }` where
 *   `state` is `running` (written when a process takes the folder), `paused` (stopped at a
 *   checkpoint; `reason` is `time_limit`, exit 75, or `interrupted`, SIGINT/SIGTERM, exit 130),
 *   `failed` (`error` holds the message) or `finished` (summary.json was written).
 *
 * A record saying `running` while nobody holds the lock is a process that died without a
 * word: the next process to take the folder says so in its log ({@link judgeFolder}), never
 * silently. Where the file system cannot lock at all, the record is all there is: a `running`
 * record of a live process on this host (or of any process on another host, which cannot be
 * checked from here) refuses the folder. `deno task status` (lib/run/status.ts) reads both.
 */
import { join } from "node:path";
import { writeAtomic } from "../io/atomic.ts";
import { InputError } from "../config/errors.ts";

/** The lock file's name inside a run folder. */
export const LOCK_FILE = "run.lock";
/** The state record's name inside a run folder. */
export const STATE_FILE = "state.json";
/** The `format` tag of state.json; a record with another tag is not read. */
export const RUN_STATE_FORMAT = "lvit-deno-run-state-v1";

/** What a process records about a run. */
export type RecordedState = "running" | "paused" | "failed" | "finished";

/** The content of state.json. */
export interface RunStateRecord {
  /** Always `RUN_STATE_FORMAT`. */
  format: typeof RUN_STATE_FORMAT;
  /** What the writing process last recorded about the run. */
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
    return r && r.format === RUN_STATE_FORMAT && typeof r.state === "string" &&
        typeof r.pid === "number"
      ? r as RunStateRecord
      : null;
  } catch {
    return null;
  }
}

/** Another live process works on the run folder (exit 2); the message names it. */
export class RunLockedError extends InputError {
  constructor(message: string) {
    super(message);
    this.name = "RunLockedError";
  }
}

/** What trying the lock of run.lock gave: got it, another process holds it, or no locking. */
export type LockProbe = "got" | "held" | "unsupported";

/** `pid N on host H` (host left out where the record has none). */
function holderOf(rec: RunStateRecord): string {
  return `pid ${rec.pid}${rec.host ? ` on host ${rec.host}` : ""}`;
}

/**
 * Whether process `pid` of this host is alive, from /proc (Linux); null where there is no /proc
 * to ask.
 */
export function pidAlive(pid: number): boolean | null {
  try {
    Deno.statSync("/proc/self");
  } catch {
    return null;
  }
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * What a process that wants run folder `dir` does, from the lock probe and state.json (pure):
 * `take` it (with a `note` for the log: a previous process that died without a word, a file
 * system without locking) or `refuse` it (`note` is the whole message, naming the holder).
 * - held: refused; state.json names the holder when it says `running`; otherwise the holder has
 *   not recorded itself (a `deno task eval` holds the lock without writing the record).
 * - got: taken; a record saying `running` is a process that died without recording why (the
 *   OS dropped its lock), reported with its pid and host, and "another host" where it ran
 *   elsewhere.
 * - unsupported (the file system refuses locks): a `running` record is believed unless its pid
 *   is known dead on this host; a record from another host cannot be checked and refuses.
 * @param here this host's name (null: unknown)
 * @param alive {@link pidAlive} (a parameter for the tests)
 */
export function judgeFolder(
  dir: string,
  probe: { kind: LockProbe; error?: string },
  rec: RunStateRecord | null,
  here: string | null,
  alive: (pid: number) => boolean | null = pidAlive,
): { verdict: "take" | "refuse"; note: string | null } {
  const lockPath = join(dir, LOCK_FILE);
  const running = rec?.state === "running" ? rec : null;
  const elsewhere = running?.host != null && here !== null && running.host !== here;
  const since = running ? ` (state.json: running since ${running.started})` : "";
  if (probe.kind === "held") {
    const who = running
      ? `${holderOf(running)}${since}`
      : `a process that has not recorded itself (a deno task eval?${
        rec ? `; state.json's last writer, ${holderOf(rec)}, recorded '${rec.state}'` : ""
      })`;
    return {
      verdict: "refuse",
      note: `${dir}: another process works on this run folder: ${who} holds ${lockPath}; ` +
        `one writer per run folder: wait for it to end or stop it, or use another --out`,
    };
  }
  if (probe.kind === "got") {
    if (!running) return { verdict: "take", note: null };
    return {
      verdict: "take",
      note:
        `${dir}: the previous process ${holderOf(running)}${
          elsewhere ? ` (another host; this is ${here})` : ""
        } ended without recording why (state.json says running since ${running.started}, nobody ` +
        `holds ${lockPath}: killed?); taking the run folder over`,
    };
  }
  const noLock = `${lockPath}: this file system does not support locking (${
    probe.error ?? "no reason given"
  })`;
  if (!running) {
    return {
      verdict: "take",
      note: `warning: ${noLock}: one writer per run folder is not enforced here`,
    };
  }
  const sameHost = running.host !== null && here !== null && running.host === here;
  const life = sameHost ? alive(running.pid) : null;
  if (life === false) {
    return {
      verdict: "take",
      note: `${dir}: the previous process ${holderOf(running)} ended without recording why ` +
        `(state.json says running since ${running.started}; no such process on this host); ` +
        `taking the run folder over (warning: ${noLock}: one writer per run folder is not ` +
        `enforced here)`,
    };
  }
  return {
    verdict: "refuse",
    note: `${dir}: state.json says ${holderOf(running)} works on this run folder (running ` +
      `since ${running.started}) and ${noLock}, so ${
        life
          ? "that process is taken at its word: it is alive on this host"
          : elsewhere
          ? `whether it is alive cannot be checked from this host (${here}): it ran on another`
          : "whether it is alive cannot be checked"
      }; wait for it to end, or if it is gone, delete ${join(dir, STATE_FILE)} and retry`,
  };
}

/** Tries the lock a few times (`deno task status` holds a shared one for an instant). */
async function probeLock(f: Deno.FsFile, exclusive: boolean) {
  try {
    for (let i = 0; i < 5; i++) {
      if (await f.tryLock(exclusive)) return { kind: "got" as const };
      await new Promise((r) => setTimeout(r, 20));
    }
    return { kind: "held" as const };
  } catch (e) {
    return { kind: "unsupported" as const, error: (e as Error).message };
  }
}

/**
 * Opens run.lock of `dir` and locks it (exclusive for a writer, shared for a reader) or throws
 * a {@link RunLockedError}; notes for the log go to `log`. Returns the open file, whose closing
 * lets go of the lock (null where the file system cannot lock).
 */
async function lockFolder(
  dir: string,
  exclusive: boolean,
  log: (line: string) => void,
): Promise<Deno.FsFile | null> {
  const f = await Deno.open(join(dir, LOCK_FILE), { read: true, write: true, create: true });
  const probe = await probeLock(f, exclusive);
  const { verdict, note } = judgeFolder(dir, probe, await readRunState(dir), hostName());
  if (verdict === "refuse") {
    f.close();
    throw new RunLockedError(note!);
  }
  if (note) log(note);
  if (probe.kind === "got") return f;
  f.close();
  return null;
}

/**
 * A reader's hold on a run folder (`deno task eval`): a shared lock, so no run trains, resumes
 * or `--force`s the folder meanwhile; throws a {@link RunLockedError} while a run holds it.
 * Writes no record. `release` lets go.
 */
export async function holdForReading(
  dir: string,
  log: (line: string) => void,
): Promise<{ release(): void }> {
  const f = await lockFolder(dir, false, log);
  return {
    release() {
      try {
        f?.close();
      } catch {
        // Already closed.
      }
    },
  };
}

/**
 * This process's hold on one run folder: `claim` takes the lock (or refuses the folder) and
 * records `running`, `end` or `fail` record the outcome and let go. `take` alone locks without
 * recording (a process that only looks, e.g. at a finished run; `release` lets go). Nothing is
 * written unless this process claimed the folder (one refused must not overwrite the record of
 * its owner).
 */
export class RunStateWriter {
  private dir: string | null = null;
  private lock: Deno.FsFile | null = null;
  private started = "";
  private recording = false;

  /**
   * Locks run.lock of the folder `dir` (which must exist), or throws a {@link RunLockedError}
   * naming the live process that holds it. A previous process that died without recording why
   * is reported through `log`.
   */
  async take(dir: string, log: (line: string) => void = () => {}): Promise<void> {
    this.lock = await lockFolder(dir, true, log);
    this.dir = dir;
    this.started = new Date().toISOString();
  }

  /** Records `running` (after {@link take}). */
  async begin(): Promise<void> {
    if (!this.dir) throw new Error("RunStateWriter.begin before take");
    this.recording = true;
    await this.write("running");
  }

  /** `take`, then `begin`. */
  async claim(dir: string, log: (line: string) => void = () => {}): Promise<void> {
    await this.take(dir, log);
    await this.begin();
  }

  /** Records how the run ended (finished, or paused at a checkpoint and why) and lets go. */
  async end(state: "finished" | "paused", reason?: "time_limit" | "interrupted"): Promise<void> {
    if (!this.dir) return;
    try {
      if (this.recording) await this.write(state, reason ? { reason } : {});
    } finally {
      this.release();
    }
  }

  /** Records a failure and lets go; never throws (the original error is what matters). */
  async fail(e: unknown): Promise<void> {
    if (!this.dir) return;
    const error = (e instanceof Error ? e.message : String(e)).slice(0, 2000);
    if (this.recording) await this.write("failed", { error }).catch(() => {});
    this.release();
  }

  /** Lets go of the folder without writing anything. */
  release() {
    try {
      this.lock?.close(); // closing the file drops its lock
    } catch {
      // Already closed.
    }
    this.lock = null;
    this.dir = null;
    this.recording = false;
  }

  private async write(state: RecordedState, extra: Partial<RunStateRecord> = {}): Promise<void> {
    const rec: RunStateRecord = {
      format: RUN_STATE_FORMAT,
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
