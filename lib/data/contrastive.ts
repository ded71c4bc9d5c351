/**
 * The contrastive label set of the semi-supervised setting (lvit-reference.md 3.2), laid out as
 * the reference ships it for QaTa-COV19:
 *
 * ```
 * LV_loss/
 *   LV_loss.xlsx       one sheet, header Image | Description, one row per mask
 *   fig1.png ... fig14.png
 * ```
 *
 * The reference figures are 350x350 palette PNGs: black background, white schematic lung
 * regions, anti-aliased edges. Each mask is read the way the image loader reads masks (any
 * format `codecs.ts` decodes, converted to grey, resized with the loader's bilinear resize) and
 * then binarised at **> 127**, not at the loader's > 0: the anti-aliased rim (a few hundred grey
 * pixels per figure) would otherwise all count as foreground and fatten every region by about a
 * pixel before the resize spreads it further; mid-grey keeps the edge where the drawing put it.
 * (The reference's own LV2D helper thresholds at > 0; that helper is never called by any
 * training code, and lvit-reference.md 3.2 recommends > 127.)
 */
import { join } from "node:path";
import { type DecodedImage, readImage } from "./codecs.ts";
import { DataError } from "./errors.ts";
import { resizeLinear, toGray8 } from "./preprocess.ts";
import { readXlsx } from "./xlsx.ts";

/** The text table's file name inside the contrastive folder. */
export const CONTRASTIVE_TABLE = "LV_loss.xlsx";
/** The conventional folder name of the set, next to the split folders. */
export const CONTRASTIVE_DIR = "LV_loss";
/** Mask grey levels above this are foreground (see the module comment for why not > 0). */
export const CONTRASTIVE_THRESHOLD = 127;

/** What every error message appends: what the folder must hold. */
const LAYOUT = `a contrastive label folder must contain ${CONTRASTIVE_TABLE} (one sheet, ` +
  `header row Image | Description, one row per mask) and the mask image each row names ` +
  `(the reference ships fig1.png ... fig14.png)`;

/** A contrastive label set as read: rows in table order. */
export interface ContrastiveSet {
  /** The folder read. */
  dir: string;
  /** Mask file names (column Image), in table order. */
  keys: string[];
  /** Descriptions (column Description), aligned with `keys`. */
  texts: string[];
  /** One size*size mask per row, values exactly 0 or 1. */
  masks: Float32Array[];
  /** Mask side in pixels. */
  size: number;
}

/** The message part of a DataError, without the "path: " prefix its constructor adds. */
function problemOf(e: DataError): string {
  const prefix = `${e.path}: `;
  return e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
}

/** A grey mask as read from disk to the size x size {0, 1} mask used by the LV loss. */
export function contrastiveMask(img: DecodedImage, size: number): Float32Array {
  const g = resizeLinear(toGray8(img), size, size).data;
  const out = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) out[i] = g[i] > CONTRASTIVE_THRESHOLD ? 1 : 0;
  return out;
}

/**
 * Reads a contrastive label set.
 * @param dir the folder holding `LV_loss.xlsx` and the masks (e.g. `<data root>/LV_loss`)
 * @param size mask side after resizing (the model's input size, 224 in the reference)
 * @throws DataError naming the folder or file for a missing folder, a missing or unreadable
 *   table, a table without the Image and Description columns or without rows, a row with an
 *   empty cell or a name that leaves the folder, a missing mask, or an undecodable mask
 * @throws RangeError for a size that is not a positive integer
 */
export async function readContrastiveSet(dir: string, size: number): Promise<ContrastiveSet> {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`contrastive mask size must be a positive integer, got ${size}`);
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    const what = e instanceof Deno.errors.NotFound ? "folder not found" : "cannot read folder";
    throw new DataError(dir, `${what}; ${LAYOUT}`);
  }
  if (!info.isDirectory) throw new DataError(dir, `not a folder; ${LAYOUT}`);

  const tablePath = join(dir, CONTRASTIVE_TABLE);
  let table;
  try {
    table = await readXlsx(tablePath);
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
    throw new DataError(e.path, `${problemOf(e)}; ${LAYOUT}`);
  }
  for (const col of ["Image", "Description"]) {
    if (!table.header.includes(col)) {
      throw new DataError(
        tablePath,
        `header row must name columns Image and Description, found: ` +
          `${table.header.join(" | ")}; ${LAYOUT}`,
      );
    }
  }
  if (table.rows.length === 0) {
    throw new DataError(tablePath, `the table has no rows; ${LAYOUT}`);
  }

  const keys: string[] = [];
  const texts: string[] = [];
  const masks: Float32Array[] = [];
  for (let r = 0; r < table.rows.length; r++) {
    const row = table.rows[r];
    const key = (row.get("Image") ?? "").trim();
    const text = (row.get("Description") ?? "").trim();
    // Counted after the header and without blank rows (parseXlsx drops them).
    const where = `data row ${r + 1}`;
    if (key === "" || text === "") {
      throw new DataError(tablePath, `${where} has an empty Image or Description cell; ${LAYOUT}`);
    }
    // Names come from an untrusted file: a mask must sit in the folder itself.
    if (/[\\/]/.test(key) || key === "." || key === "..") {
      throw new DataError(
        tablePath,
        `${where} names ${key}, which is not a file name in the folder; ${LAYOUT}`,
      );
    }
    const maskPath = join(dir, key);
    let mask: Float32Array;
    try {
      mask = contrastiveMask(await readImage(maskPath), size);
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      throw new DataError(
        maskPath,
        `${problemOf(e)} (named by ${where} of ${CONTRASTIVE_TABLE}); ${LAYOUT}`,
      );
    }
    keys.push(key);
    texts.push(text);
    masks.push(mask);
  }
  return { dir, keys, texts, masks, size };
}
