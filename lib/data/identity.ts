/**
 * The identity of a data set as a run sees it (design.md 5: the data set's fingerprint is part
 * of a run's identity and of its checkpoints). `data.root: null` takes the data set from
 * `LVIT_DATA`, outside the config hash, so the runner compares this identity with the one its
 * run folder and checkpoints recorded: another data set is refused (exit 2) instead of reusing
 * the folder, resuming on it or being scored by `deno task eval`.
 *
 * It is a hex SHA-256 of, per split and sample, the key, the image and mask file names, their
 * sizes in bytes and the text. Unlike the decoded-cache fingerprint (`datasetFingerprint` in
 * dataset.ts, which also covers modification times and the preprocessing version, so that a
 * cache is never stale) it leaves modification times out: a copy of the data set (cp without
 * -p, rsync to a node's scratch disk, a regenerated synthetic set) is the same data set, while
 * another one, or a file replaced by one of another size, is not. The root path is left out
 * for the same reason.
 */
import { basename } from "node:path";
import { DataError, describeError } from "./errors.ts";
import { sha256Hex } from "./hash.ts";
import { type DatasetKind, listLvitDataset, type LvitDataset, SPLITS } from "./lvit_folder.ts";

const VERSION = "lvit-data-identity/1: split, key, image name+bytes, mask name+bytes, text";

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    throw new DataError(path, `cannot stat: ${describeError(e)}`);
  }
}

/** The identity of a listed data set (see the module doc). */
export async function datasetIdentity(ds: LvitDataset): Promise<string> {
  const entries: unknown[] = [];
  for (const split of SPLITS) {
    for (const s of ds.splits[split]) {
      const [img, mask] = await Promise.all([sizeOf(s.imagePath), sizeOf(s.maskPath)]);
      entries.push([
        split,
        s.key,
        basename(s.imagePath),
        img,
        basename(s.maskPath),
        mask,
        s.text,
      ]);
    }
  }
  return await sha256Hex(JSON.stringify({ version: VERSION, samples: entries }));
}

/**
 * Lists the data set at `root` (default `LVIT_DATA`) and returns its identity; nothing is
 * decoded.
 * @throws DataError for a bad data folder
 */
export async function identityOf(kind: DatasetKind, root?: string): Promise<string> {
  return await datasetIdentity(await listLvitDataset(kind, root));
}
