/**
 * The reader for LViT's folder layout (lvit-reference.md 4.1):
 *
 * ```
 * <root>/Train_Folder/ img/ labelcol/ <text xlsx>
 * <root>/Val_Folder/   img/ labelcol/ [<text xlsx>]
 * <root>/Test_Folder/  img/ labelcol/ Test_text.xlsx
 * ```
 *
 * Listing is cheap (names and texts only); {@link loadSample} decodes and preprocesses one
 * sample as the reference does (section 4.3).
 */
import { basename, join } from "node:path";
import { type DecodedImage, readImage } from "./codecs.ts";
import { DataError, describeError } from "./errors.ts";
import { preprocessImage, preprocessMask } from "./preprocess.ts";
import { readTextTable } from "./xlsx.ts";

/** The data sets the reader knows the naming rules of. */
export type DatasetKind = "monuseg" | "qata" | "mosmed";
/** The three splits, each its own folder. */
export type Split = "train" | "val" | "test";
/** All splits, in the order they are listed. */
export const SPLITS: readonly Split[] = ["train", "val", "test"];

/** One listed sample: where its files are and its description. */
export interface LvitSample {
  /** Path of the image file. */
  imagePath: string;
  /** Path of the mask file. */
  maskPath: string;
  /** The mask file name, which is the key into the text table. */
  key: string;
  /** The sample's description from the text table. */
  text: string;
}

/** A listed data set: the samples of every split, sorted by key. */
export interface LvitDataset {
  /** The data set folder. */
  root: string;
  /** The naming rules the folder was listed with. */
  kind: DatasetKind;
  /** The samples of each split, sorted by key. */
  splits: Record<Split, LvitSample[]>;
}

/** A preprocessed sample, ready for batching. */
export interface LoadedSample {
  /** 3 x size x size, **BGR** channel order, values in [0, 1]. */
  image: Float32Array;
  /** size x size, values 0 or 1. */
  mask: Float32Array;
  /** Side length of image and mask, in pixels. */
  size: number;
}

const FOLDER: Record<Split, string> = {
  train: "Train_Folder",
  val: "Val_Folder",
  test: "Test_Folder",
};

const SOURCES: Record<DatasetKind, string> = {
  monuseg: "MoNuSeg 2018 (monuseg.grand-challenge.org) with the LViT text files " +
    "(Train_text.xlsx, Val_text.xlsx, Test_text.xlsx) linked from the LViT README " +
    "(github.com/HUANGLIZI/LViT)",
  qata: "QaTa-COV19 (Kaggle, 'qatacov19-dataset') with LViT's Train_Val_text.xlsx and " +
    "Test_text.xlsx linked from the LViT README (github.com/HUANGLIZI/LViT)",
  mosmed: "MosMedData+ (Kaggle 'covid19-ct-scan-lesion-segmentation-dataset') with the LViT " +
    "text files linked from the LViT README (github.com/HUANGLIZI/LViT)",
};

const IMAGE_EXT = /\.(png|tif|tiff|jpg|jpeg)$/i;

/** The text table for a split: QaTa shares one table between train and val (4.1). */
function textFile(kind: DatasetKind, split: Split): string {
  if (kind === "qata" && split !== "test") return join(FOLDER.train, "Train_Val_text.xlsx");
  const stem = { train: "Train", val: "Val", test: "Test" }[split];
  return join(FOLDER[split], `${stem}_text.xlsx`);
}

/** The folder of a split under the data root, e.g. `Train_Folder`. */
export function splitFolder(split: Split): string {
  return FOLDER[split];
}

/** The text table of a split, relative to the data root (QaTa's train and val share one). */
export function textTablePath(kind: DatasetKind, split: Split): string {
  return textFile(kind, split);
}

/** Whether the reader takes a file name as an image or mask (by extension). */
export function isImageName(name: string): boolean {
  return IMAGE_EXT.test(name);
}

/**
 * Whether a file in labelcol/ is a mask under the data set's naming: QaTa masks are
 * `mask_<image>`, the others are PNGs named like their image (4.1).
 */
export function isMaskName(kind: DatasetKind, name: string): boolean {
  if (kind === "qata") return name.startsWith("mask_") && IMAGE_EXT.test(name);
  return name.endsWith(".png");
}

/** The mask file name of an image under the data set's naming (4.1). */
export function maskNameFor(kind: DatasetKind, image: string): string {
  return kind === "qata" ? `mask_${image}` : image.replace(/\.[^.]+$/, ".png");
}

/** What the reader expects under the root, for error messages. */
export function expectedLayout(kind: DatasetKind): string {
  const lines = SPLITS.map((s) =>
    `  ${FOLDER[s]}/img/, ${FOLDER[s]}/labelcol/` +
    (kind === "qata" && s === "val" ? " (texts in Train_Val_text.xlsx)" : `, ${textFile(kind, s)}`)
  );
  const naming = kind === "qata"
    ? "masks are labelcol/mask_<image>.png for img/<image>"
    : "masks are labelcol/<image name with extension png>";
  return `expected layout under the data root:\n${lines.join("\n")}\n` +
    `  (${naming}; the xlsx column Image holds the mask file name)\n` +
    `the data set comes from ${SOURCES[kind]}`;
}

/**
 * The data root: the argument, else the `LVIT_DATA` environment variable.
 * @throws DataError when neither is given
 */
export function resolveDataRoot(root?: string): string {
  if (root) return root;
  let env: string | undefined;
  try {
    env = Deno.env.get("LVIT_DATA");
  } catch {
    // No --allow-env: treat as unset and say how to pass the root instead.
  }
  if (env) return env;
  throw new DataError(
    "<data root>",
    "no data root given: pass it as an argument or set LVIT_DATA to the data set folder",
  );
}

/**
 * The file names in a folder as the reader sees them: hidden files and sub-folders skipped,
 * sorted by code unit.
 *
 * A symbolic link is taken as what it points to (data sets are often shared by linking their
 * files from one copy): a link to a folder is skipped like a folder, anything else is listed.
 * Links are followed wherever they point, inside the data root or not; only the files the
 * listing names are ever read, read-only, and names from the text tables never become paths.
 * A link that is broken or loops, or that points at (or an entry that is) something other than
 * a regular file (a FIFO, a device such as /dev/zero), is listed too, so that the reader
 * refuses it with a message naming it (lib/io/bounded.ts) rather than skipping it silently.
 * @returns null when the folder is missing (or not a folder)
 * @throws DataError when it exists but cannot be listed
 */
export async function listFiles(dir: string): Promise<string[] | null> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      // Hidden files (.DS_Store, ._x) and sub-folders are never samples.
      if (e.name.startsWith(".") || e.isDirectory) continue;
      if (e.isSymlink) {
        const target = await Deno.stat(join(dir, e.name)).catch(() => null);
        if (target?.isDirectory) continue;
      }
      names.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw new DataError(dir, `cannot list folder: ${describeError(e)}`);
  }
  // Code-unit order, not locale order: the listing must not depend on the machine.
  return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

async function listNames(dir: string, kind: DatasetKind, root: string): Promise<string[]> {
  const names = await listFiles(dir);
  if (names === null) {
    throw new DataError(dir, `folder missing (data root ${root})\n${expectedLayout(kind)}`);
  }
  return names;
}

/** Whether a path is a regular file (false when missing or unreadable). */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Lists one split: pairs images with masks by the data set's naming rule and attaches texts.
 * @throws DataError for a missing folder or table, an unpaired file, or a sample without text
 */
export async function listSplit(
  kind: DatasetKind,
  split: Split,
  root?: string,
): Promise<LvitSample[]> {
  const base = resolveDataRoot(root);
  const imgDir = join(base, FOLDER[split], "img");
  const maskDir = join(base, FOLDER[split], "labelcol");
  const tablePath = join(base, textFile(kind, split));
  if (!(await isFile(tablePath))) {
    throw new DataError(tablePath, `text table missing\n${expectedLayout(kind)}`);
  }
  const texts = await readTextTable(tablePath);
  const pairs: { image: string; mask: string }[] = [];
  if (kind === "qata") {
    // QaTa is driven by its masks: every mask_<image>.png names its image.
    const imageNames = new Set(await listNames(imgDir, kind, base));
    for (const mask of await listNames(maskDir, kind, base)) {
      if (!isMaskName(kind, mask)) continue;
      const image = mask.slice("mask_".length);
      if (!imageNames.has(image)) {
        throw new DataError(join(maskDir, mask), `no image ${join(imgDir, image)} for this mask`);
      }
      pairs.push({ image, mask });
    }
  } else {
    // MoNuSeg (and MosMed, assumed alike): the mask is the image name with extension "png".
    const maskNames = new Set(await listNames(maskDir, kind, base));
    for (const image of await listNames(imgDir, kind, base)) {
      if (!IMAGE_EXT.test(image)) continue;
      const mask = maskNameFor(kind, image);
      if (!maskNames.has(mask)) {
        throw new DataError(join(imgDir, image), `no mask ${join(maskDir, mask)} for this image`);
      }
      pairs.push({ image, mask });
    }
  }
  if (pairs.length === 0) {
    throw new DataError(imgDir, `no samples found\n${expectedLayout(kind)}`);
  }
  return pairs.map(({ image, mask }) => {
    const text = texts.get(mask);
    if (text === undefined) {
      throw new DataError(tablePath, `no row with Image = ${mask} (the mask of ${image})`);
    }
    return { imagePath: join(imgDir, image), maskPath: join(maskDir, mask), key: mask, text };
  });
}

/**
 * Lists all three splits of an LViT-layout data set.
 * @param kind which naming rules apply
 * @param root the data set folder (the one holding Train_Folder); default env `LVIT_DATA`
 * @throws DataError as {@link listSplit}
 */
export async function listLvitDataset(kind: DatasetKind, root?: string): Promise<LvitDataset> {
  const base = resolveDataRoot(root);
  const splits = {} as Record<Split, LvitSample[]>;
  for (const s of SPLITS) splits[s] = await listSplit(kind, s, base);
  return { root: base, kind, splits };
}

/**
 * The check of a decoded image and its mask, shared by `data:check` (lib/data/check.ts) and
 * training (loadSample, the decoded-tensor cache): they must be the same size, or the mask,
 * resized on its own, no longer lines up with the image.
 * @returns the problem, naming the mask, or null
 */
export function pairProblem(
  image: { path: string; width: number; height: number },
  mask: { path: string; width: number; height: number },
): DataError | null {
  if (image.width === mask.width && image.height === mask.height) return null;
  return new DataError(
    mask.path,
    `mask is ${mask.width}x${mask.height} but its image ${basename(image.path)} is ` +
      `${image.width}x${image.height}`,
  );
}

/**
 * Decodes a sample's image and mask and checks them as a pair ({@link pairProblem}).
 * @throws DataError when either file cannot be read or decoded, or they do not match
 */
export async function readSamplePair(
  sample: Pick<LvitSample, "imagePath" | "maskPath">,
): Promise<{ image: DecodedImage; mask: DecodedImage }> {
  // One after the other: the two decoded images (up to MAX_DECODED_BYTES each) are the peak.
  const image = await readImage(sample.imagePath);
  const mask = await readImage(sample.maskPath);
  const bad = pairProblem({ path: sample.imagePath, ...image }, { path: sample.maskPath, ...mask });
  if (bad) throw bad;
  return { image, mask };
}

/**
 * Decodes and preprocesses one sample like the reference loader: image to BGR, bilinear resize
 * to size x size, / 255 as CHW; mask to grey, the same resize, then > 0 -> 1.
 * @param size output side length (224 in every LViT configuration)
 * @throws DataError when either file cannot be read or decoded, or they differ in size
 */
export async function loadSample(sample: LvitSample, size = 224): Promise<LoadedSample> {
  const { image, mask } = await readSamplePair(sample);
  return { image: preprocessImage(image, size), mask: preprocessMask(mask, size), size };
}
