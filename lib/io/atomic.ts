/**
 * Atomic file replacement: write a uniquely named temporary file in the same folder, then
 * rename it over the target. Readers (and a crashed or killed writer) see the old file or the
 * new one, never a torn one; run folders, checkpoints and reports all rely on it.
 */
import { dirname } from "node:path";

/**
 * Writes `data` to `path` atomically, creating the folder; the temporary is removed on failure.
 * `data` may come in pieces (an iterable of byte arrays, written in order), so a large file is
 * never assembled in memory.
 */
export async function writeAtomic(
  path: string,
  data: Uint8Array | string | Iterable<Uint8Array>,
): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else if (data instanceof Uint8Array) await Deno.writeFile(tmp, data);
    else await writePieces(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Staging size for pieces: large enough that a write call moves megabytes. */
const STAGE_BYTES = 8 << 20;

/**
 * Writes the pieces through one reused staging buffer: small tensors coalesce into few write
 * calls, and views of SharedArrayBuffers (the CPU backend's leaves) reach the file as copies of
 * at most STAGE_BYTES at a time.
 */
async function writePieces(path: string, pieces: Iterable<Uint8Array>): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    await writeStaged(file, pieces);
  } finally {
    file.close();
  }
}

async function writeStaged(file: Deno.FsFile, pieces: Iterable<Uint8Array>): Promise<void> {
  const stage = new Uint8Array(STAGE_BYTES);
  let used = 0;
  const flush = async () => {
    for (let at = 0; at < used;) at += await file.write(stage.subarray(at, used));
    used = 0;
  };
  for (const p of pieces) {
    for (let at = 0; at < p.length;) {
      const n = Math.min(p.length - at, STAGE_BYTES - used);
      stage.set(p.subarray(at, at + n), used);
      used += n;
      at += n;
      if (used === STAGE_BYTES) await flush();
    }
  }
  await flush();
}
