/**
 * Atomic file replacement: write a uniquely named temporary file in the same folder, then
 * rename it over the target. Readers (and a crashed or killed writer) see the old file or the
 * new one, never a torn one; run folders, checkpoints and reports all rely on it.
 */
import { dirname } from "node:path";

/** Writes `data` to `path` atomically, creating the folder; the temporary is removed on failure. */
export async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
