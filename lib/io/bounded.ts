/**
 * Reading untrusted files within a byte bound. Every reader of user-supplied files (experiment
 * YAML, images, xlsx tables, checkpoints, caches) goes through here, so that:
 *
 * - the path must name a regular file (after following symbolic links): a folder, a FIFO, a
 *   socket or a device such as `/dev/zero` is refused before it is opened, since reading one may
 *   never end or block forever;
 * - the size the file system reports is checked against the caller's limit before a byte is
 *   read, and the read itself stops at the limit, so a file that grows while it is read or
 *   reports no size (`/proc`) cannot push past it either;
 * - text must be valid UTF-8: the first invalid byte is reported with its offset, line and
 *   column instead of being replaced silently (which would change what the text means, and
 *   hence a run's config hash).
 *
 * Failures are {@link BoundedReadError}s whose message names the file and the limit; callers
 * wrap them into their own error types (DataError, InputError, ...), all of which the CLIs turn
 * into exit 2 with one message.
 */

/** Why a bounded read failed; `message` is `<file>: <problem>`. */
export class BoundedReadError extends Error {
  /** The file concerned. */
  readonly path: string;
  /** What is wrong, without the path. */
  readonly problem: string;
  /** True when nothing exists at the path (callers word "missing" their own way). */
  readonly notFound: boolean;

  constructor(path: string, problem: string, o: { notFound?: boolean; where?: string } = {}) {
    super(`${o.where ?? path}: ${problem}`);
    this.name = "BoundedReadError";
    this.path = path;
    this.problem = problem;
    this.notFound = o.notFound ?? false;
  }
}

/** `n` bytes in words: `268435456 bytes (256 MiB)`. */
export function fmtBytes(n: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n, u = "";
  for (const next of units) {
    if (v < 1024) break;
    v /= 1024;
    u = next;
  }
  return u ? `${n} bytes (${Number.isInteger(v) ? v : v.toFixed(1)} ${u})` : `${n} bytes`;
}

/** What a non-regular file is, in words. */
function kindOf(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a folder";
  if (info.isFifo) return "a FIFO (named pipe)";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a regular file";
}

/** A file-system error while looking at `path`, in words (broken links and loops named). */
function describeFsError(path: string, e: unknown): BoundedReadError {
  if (e instanceof Deno.errors.NotFound) {
    // A dangling symbolic link stats as missing: say so, and where it points.
    let target: string | null = null;
    try {
      if (Deno.lstatSync(path).isSymlink) target = Deno.readLinkSync(path);
    } catch {
      // Nothing there at all.
    }
    return target === null
      ? new BoundedReadError(path, "file not found", { notFound: true })
      : new BoundedReadError(path, `broken symbolic link: its target ${target} does not exist`, {
        notFound: true,
      });
  }
  if (e instanceof Deno.errors.FilesystemLoop) {
    return new BoundedReadError(path, "symbolic link loop (too many levels of symbolic links)");
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    return new BoundedReadError(path, "permission denied");
  }
  return new BoundedReadError(path, `cannot read: ${e instanceof Error ? e.message : String(e)}`);
}

/** Refuses what is not a regular file or is larger than `maxBytes` (from its stat). */
function checkInfo(path: string, info: Deno.FileInfo, maxBytes: number, what: string): void {
  if (!info.isFile) {
    throw new BoundedReadError(path, `is ${kindOf(info)}, not a regular file`);
  }
  if (info.size > maxBytes) {
    throw new BoundedReadError(
      path,
      `file is ${fmtBytes(info.size)}, more than the ${fmtBytes(maxBytes)} accepted for ${what}`,
    );
  }
}

/**
 * Why `path` cannot be read as a regular file (missing, a broken or looping symbolic link, a
 * folder, FIFO or device, no permission), in words; null when it is one. Follows links.
 */
export async function regularFileProblem(path: string): Promise<string | null> {
  try {
    const info = await Deno.stat(path);
    return info.isFile ? null : `is ${kindOf(info)}, not a regular file`;
  } catch (e) {
    return describeFsError(path, e).problem;
  }
}

const tooLarge = (path: string, maxBytes: number, what: string) =>
  new BoundedReadError(
    path,
    `file holds more than the ${fmtBytes(maxBytes)} accepted for ${what} (it grew while ` +
      "being read, or its size is not known in advance)",
  );

/**
 * Reads `f` (whose stat said `size` bytes) to its end, but never more than `maxBytes`: the
 * buffer starts at the stat'ed size and grows only if the file turns out longer.
 */
function* readLoop(
  size: number,
  maxBytes: number,
): Generator<Uint8Array, Uint8Array, number | null> {
  let buf = new Uint8Array(Math.min(size, maxBytes));
  let n = 0;
  for (;;) {
    if (n === buf.length) {
      if (n >= maxBytes) {
        // At the limit: one more byte means the file is larger than allowed.
        const more = yield new Uint8Array(1);
        if (more === null || more === 0) return buf;
        throw new RangeError("over");
      }
      const next = new Uint8Array(Math.min(maxBytes, Math.max(2 * buf.length, 65536)));
      next.set(buf);
      buf = next;
    }
    const r = yield buf.subarray(n);
    if (r === null) return n === buf.length ? buf : buf.slice(0, n);
    n += r;
  }
}

/**
 * Reads a whole file, refusing a non-regular file or one larger than `maxBytes` before reading
 * (and stopping at the limit while reading).
 * @param what what the file is, for the message: "`file is N bytes, more than the M accepted
 *   for <what>`"
 * @throws BoundedReadError naming the file and the limit
 */
export async function readFileBounded(
  path: string,
  maxBytes: number,
  what: string,
): Promise<Uint8Array> {
  let f: Deno.FsFile;
  try {
    // Checked before opening: opening a FIFO for reading blocks until a writer appears.
    checkInfo(path, await Deno.stat(path), maxBytes, what);
    f = await Deno.open(path, { read: true });
  } catch (e) {
    throw e instanceof BoundedReadError ? e : describeFsError(path, e);
  }
  try {
    const info = await f.stat();
    checkInfo(path, info, maxBytes, what);
    const loop = readLoop(info.size, maxBytes);
    let step = loop.next(0);
    while (!step.done) step = loop.next(await f.read(step.value));
    return step.value;
  } catch (e) {
    if (e instanceof BoundedReadError) throw e;
    if (e instanceof RangeError && e.message === "over") throw tooLarge(path, maxBytes, what);
    throw describeFsError(path, e);
  } finally {
    f.close();
  }
}

/** {@link readFileBounded}, synchronously. */
export function readFileBoundedSync(path: string, maxBytes: number, what: string): Uint8Array {
  let f: Deno.FsFile;
  try {
    checkInfo(path, Deno.statSync(path), maxBytes, what);
    f = Deno.openSync(path, { read: true });
  } catch (e) {
    throw e instanceof BoundedReadError ? e : describeFsError(path, e);
  }
  try {
    const info = f.statSync();
    checkInfo(path, info, maxBytes, what);
    const loop = readLoop(info.size, maxBytes);
    let step = loop.next(0);
    while (!step.done) step = loop.next(f.readSync(step.value));
    return step.value;
  } catch (e) {
    if (e instanceof BoundedReadError) throw e;
    if (e instanceof RangeError && e.message === "over") throw tooLarge(path, maxBytes, what);
    throw describeFsError(path, e);
  } finally {
    f.close();
  }
}

/**
 * The offset of the first byte that does not belong to a valid UTF-8 sequence (overlong forms,
 * surrogates and code points above U+10FFFF are invalid, as for `TextDecoder` with `fatal`), or
 * -1 when all of `bytes` is valid.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let len: number, lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0; // overlong
      if (b === 0xed) hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90; // overlong
      if (b === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k];
      // The first continuation byte has the narrowed range; the others the plain one.
      if (i + k >= n || c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return i;
    }
    i += len;
  }
  return -1;
}

/**
 * Decodes UTF-8 text strictly (a leading byte-order mark is dropped, as `Deno.readTextFile`
 * does). @throws BoundedReadError at `<path>:<line>:<col>` naming the first invalid byte and
 * its offset
 */
export function decodeUtf8Strict(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const at = Math.max(0, firstInvalidUtf8(bytes));
    let lineStart = 0, line = 1;
    for (let i = 0; i < at; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    // Everything before `at` is valid, so the column can count characters.
    const col = [...new TextDecoder().decode(bytes.subarray(lineStart, at))].length + 1;
    const hex = (bytes[at] ?? 0).toString(16).toUpperCase().padStart(2, "0");
    throw new BoundedReadError(
      path,
      `not valid UTF-8 text: byte 0x${hex} at byte offset ${at} does not start or continue ` +
        "a UTF-8 character (save the file as UTF-8)",
      { where: `${path}:${line}:${col}` },
    );
  }
}

/** {@link readFileBounded} then {@link decodeUtf8Strict}. */
export async function readTextBounded(
  path: string,
  maxBytes: number,
  what: string,
): Promise<string> {
  return decodeUtf8Strict(await readFileBounded(path, maxBytes, what), path);
}

/** {@link readFileBoundedSync} then {@link decodeUtf8Strict}. */
export function readTextBoundedSync(path: string, maxBytes: number, what: string): string {
  return decodeUtf8Strict(readFileBoundedSync(path, maxBytes, what), path);
}
