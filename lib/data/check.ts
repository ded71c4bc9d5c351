/**
 * A full check of an LViT-layout data set (lvit-reference.md 4.1-4.3), for `deno task
 * data:check`. Where the reader ({@link listSplit}) stops at the first problem, this walks every
 * split, pairs every file, reads every text table and decodes every image and mask, and collects
 * **all** problems, each a {@link DataError} naming the file, so a user fixes a folder in one
 * round instead of one error per training start.
 *
 * Problems are what the reader or training would trip over (a missing folder, mask, image or
 * text row, an undecodable or truncated file, a malformed table, image and mask of different
 * sizes). Training checks a data set with the same code ({@link checkedListing}: this check
 * short of decoding, then each pair through lvit_folder.ts's readSamplePair, which the decode
 * step here shares through pairProblem), so a data set data:check refuses never trains. Warnings are what it silently skips or resolves (files without an image extension,
 * repeated rows), which is worth knowing but does not fail the check.
 */
import { dirname, join, relative } from "node:path";
import { pngTruncation, readImage, tiffTruncation } from "./codecs.ts";
export { pngTruncation, tiffTruncation };
import { regularFileProblem } from "../io/bounded.ts";
import { DataError, describeError } from "./errors.ts";
import {
  type DatasetKind,
  expectedLayout,
  isFile,
  isImageName,
  isMaskName,
  listFiles,
  listLvitDataset,
  type LvitDataset,
  maskNameFor,
  pairProblem,
  resolveDataRoot,
  type Split,
  splitFolder,
  SPLITS,
  textTablePath,
} from "./lvit_folder.ts";
import { readXlsx, textTableOf } from "./xlsx.ts";

/** How the naming rules were chosen. */
export interface KindChoice {
  /** The naming rules the check applied. */
  kind: DatasetKind;
  /** False when nothing in the folder told the naming apart and the default was taken. */
  detected: boolean;
  /** Why this kind, in words (shown to the user). */
  reason: string;
}

/** What was found in one split. */
export interface SplitSummary {
  /** Which split this is. */
  split: Split;
  /** The split folder, relative to the root (`Train_Folder`). */
  folder: string;
  /** False when the split folder is missing (everything else is then 0). */
  present: boolean;
  /** Files in img/ with an image extension. */
  images: number;
  /** Files in labelcol/ that are masks under the naming. */
  masks: number;
  /** Image + mask pairs. */
  pairs: number;
  /** Pairs with a text row. */
  texts: number;
  /** Files of this split that decoded (images and masks). */
  decoded: number;
  /** Distinct decoded image sizes as "WxH", sorted. */
  imageSizes: string[];
  /** The text table the split's rows come from, relative to the root. */
  table: string;
}

/** The result of {@link checkDataset}. */
export interface CheckReport {
  /** The data set folder that was checked. */
  root: string;
  /** The naming rules used, and why. */
  choice: KindChoice;
  /** In split order; a missing split folder gives `present: false`. */
  splits: SplitSummary[];
  /** Every problem found, sorted by file; empty when the data set is usable. */
  problems: DataError[];
  /** Things the reader skips or resolves silently; they do not fail the check. */
  warnings: string[];
  /** Files decoded in all (images and masks). */
  decoded: number;
  /** A guess at the cause when the naming looks wrong (images that pair with nothing). */
  hint?: string;
}

/** Options of {@link checkDataset}. */
export interface CheckOptions {
  /** The naming rules; detected from the folder when omitted ({@link detectKind}). */
  kind?: DatasetKind;
  /** Called after each decoded file with (files done, files to decode, the file). */
  onProgress?: (done: number, total: number, path: string) => void;
  /**
   * Decode every image and mask and check the pairs (default true). False checks the layout,
   * pairing and text tables only: what training checks before its decoded-tensor cache, which
   * then decodes and checks each pair through the same function (readSamplePair in lvit_folder.ts).
   */
  decode?: boolean;
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch {
    return null;
  }
}

/**
 * Chooses the naming rules from what the folder holds: QaTa's shared `Train_Val_text.xlsx` or
 * `mask_` names mean QaTa; per-split tables or same-named masks mean the MoNuSeg rules (which
 * MosMedData+ shares, so the two cannot be told apart and MoNuSeg is reported). With no clue at
 * all, QaTa is assumed and the reason says so.
 */
export async function detectKind(root: string): Promise<KindChoice> {
  if (await isFile(join(root, textTablePath("qata", "train")))) {
    return { kind: "qata", detected: true, reason: `found ${textTablePath("qata", "train")}` };
  }
  for (const s of SPLITS) {
    if (s === "test") continue; // Test_text.xlsx is common to all naming rules.
    const t = textTablePath("monuseg", s);
    if (await isFile(join(root, t))) {
      return {
        kind: "monuseg",
        detected: true,
        reason: `found ${t}; MoNuSeg and MosMedData+ share this naming ` +
          `(masks are labelcol/<image stem>.png), pass --dataset to name one`,
      };
    }
  }
  for (const s of SPLITS) {
    const masks = await listFiles(join(root, splitFolder(s), "labelcol"));
    if (!masks?.length) continue;
    const qata = masks.filter((m) => m.startsWith("mask_")).length;
    return qata * 2 >= masks.length
      ? { kind: "qata", detected: true, reason: `masks in ${splitFolder(s)} are mask_<image>` }
      : {
        kind: "monuseg",
        detected: true,
        reason: `masks in ${splitFolder(s)} are not named mask_<image>; MoNuSeg and ` +
          `MosMedData+ share this naming, pass --dataset to name one`,
      };
  }
  return {
    kind: "qata",
    detected: false,
    reason: `could not tell the naming (no text tables or masks under ${root}); ` +
      "assuming qata, pass --dataset qata|mosmed|monuseg to choose",
  };
}

/** When a split has images but not one pairs with a mask, the naming rule is the likely cause. */
function namingHint(kind: DatasetKind, splits: SplitSummary[]): string | undefined {
  const bad = splits.filter((s) => s.present && s.images > 0 && s.pairs === 0);
  if (bad.length === 0) return undefined;
  const other = kind === "qata" ? "monuseg or mosmed (labelcol/<image stem>.png)" : "qata " +
    "(labelcol/mask_<image>)";
  return `no image in ${bad.map((s) => s.folder).join(", ")} pairs with a mask under ${kind} ` +
    `naming; if the data set uses the other naming, pass --dataset ${other}`;
}

/** Split order (Train, Val, Test), then path: the order a user walks the folder in. */
function sortProblems(root: string, problems: DataError[]): DataError[] {
  const rank = (p: string) => {
    const first = relative(root, p).split(/[\\/]/)[0];
    const i = SPLITS.findIndex((s) => splitFolder(s) === first);
    return i < 0 ? -1 : i;
  };
  return problems
    .map((p) => ({ p, r: rank(p.path) }))
    .sort((a, b) => a.r - b.r || (a.p.path < b.p.path ? -1 : a.p.path > b.p.path ? 1 : 0))
    .map((x) => x.p);
}

/**
 * Appends the (long) expected layout to the first layout problem in output order and a pointer
 * to it to the others, so it is printed once however many folders are missing.
 */
function withLayout(sorted: DataError[], marked: Set<DataError>, kind: DatasetKind): DataError[] {
  let shown = false;
  return sorted.map((e) => {
    if (!marked.has(e)) return e;
    const problem = e.message.slice(e.path.length + 2);
    const suffix = shown ? " (expected layout: see above)" : `\n${expectedLayout(kind)}`;
    shown = true;
    return new DataError(e.path, problem + suffix);
  });
}

/** One file to decode, and what it belongs to. */
interface DecodeJob {
  split: Split;
  path: string;
}

/** A split's files after listing and pairing. */
interface SplitFiles {
  split: Split;
  imgDir: string;
  maskDir: string;
  images: string[];
  masks: string[];
  pairs: { image: string; mask: string }[];
}

/**
 * Checks a data set folder completely and reports every problem (see the module comment).
 * Never throws for bad data: every data problem becomes an entry of `problems`.
 * @param root the folder holding Train_Folder, Val_Folder and Test_Folder
 * @throws only for internal errors (a bug), never for bad data
 */
export async function checkDataset(root: string, o: CheckOptions = {}): Promise<CheckReport> {
  const problems: DataError[] = [];
  const warnings: string[] = [];
  let rootInfo: Deno.FileInfo | null = null;
  try {
    rootInfo = await Deno.stat(root);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) {
      // Permission and I/O errors are the user's to fix, not a bug: report, do not crash.
      return {
        root,
        choice: { kind: o.kind ?? "qata", detected: !!o.kind, reason: "root not readable" },
        splits: [],
        problems: [new DataError(root, `cannot read the data root: ${describeError(e)}`)],
        warnings: [],
        decoded: 0,
      };
    }
  }
  const choice: KindChoice = o.kind
    ? { kind: o.kind, detected: true, reason: "chosen with --dataset" }
    : rootInfo?.isDirectory
    ? await detectKind(root)
    : { kind: "qata", detected: false, reason: "no data root to look at; assuming qata" };
  const kind = choice.kind;
  const summaries: SplitSummary[] = [];
  let decoded = 0;
  /** Problems that say the layout is wrong get the expected layout appended (once). */
  const needsLayout = new Set<DataError>();
  const report = (): CheckReport => ({
    root,
    choice,
    splits: summaries,
    problems: withLayout(sortProblems(root, problems), needsLayout, kind),
    warnings,
    decoded,
    hint: namingHint(kind, summaries),
  });
  if (!rootInfo?.isDirectory) {
    problems.push(
      new DataError(
        root,
        `${rootInfo ? "not a folder" : "data root not found"}\n${expectedLayout(kind)}`,
      ),
    );
    return report();
  }

  const layoutProblem = (path: string, problem: string) => {
    const e = new DataError(path, problem);
    needsLayout.add(e);
    problems.push(e);
  };

  // ---- list and pair every split
  const files: SplitFiles[] = [];
  const missingSplits = new Set<Split>();
  for (const split of SPLITS) {
    const folder = splitFolder(split);
    const summary: SplitSummary = {
      split,
      folder,
      present: false,
      images: 0,
      masks: 0,
      pairs: 0,
      texts: 0,
      decoded: 0,
      imageSizes: [],
      table: textTablePath(kind, split),
    };
    summaries.push(summary);
    const dir = join(root, folder);
    if (!(await statOrNull(dir))?.isDirectory) {
      layoutProblem(dir, "split folder missing");
      missingSplits.add(split);
      continue;
    }
    summary.present = true;
    const imgDir = join(dir, "img"), maskDir = join(dir, "labelcol");
    /** The folder's names; null (and a problem) when it is missing or unreadable. */
    const list = async (d: string): Promise<string[] | null> => {
      try {
        const names = await listFiles(d);
        if (names === null) layoutProblem(d, "folder missing");
        return names;
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
        problems.push(e);
        return null;
      }
    };
    const imgNames = await list(imgDir), maskNames = await list(maskDir);
    if (imgNames === null || maskNames === null) missingSplits.add(split);
    const images = (imgNames ?? []).filter((n) => {
      if (isImageName(n)) return true;
      warnings.push(`${join(imgDir, n)}: ignored, not an image file name`);
      return false;
    });
    const masks = (maskNames ?? []).filter((n) => {
      if (isMaskName(kind, n)) return true;
      warnings.push(
        `${join(maskDir, n)}: ignored, not a mask name under ${kind} naming (${
          kind === "qata" ? "mask_<image>" : "<image stem>.png"
        })`,
      );
      return false;
    });
    const maskSet = new Set(masks);
    const pairs: { image: string; mask: string }[] = [];
    const imageOfMask = new Map<string, string>();
    for (const image of images) {
      const mask = maskNameFor(kind, image);
      const other = imageOfMask.get(mask);
      if (other !== undefined) {
        problems.push(
          new DataError(
            join(imgDir, image),
            `pairs with the same mask ${mask} as ${other}; only one image may own a mask`,
          ),
        );
        continue;
      }
      imageOfMask.set(mask, image);
      if (maskSet.has(mask)) pairs.push({ image, mask });
      else if (maskNames !== null) {
        problems.push(
          new DataError(join(imgDir, image), `mask missing: no ${join(maskDir, mask)}`),
        );
      }
    }
    if (imgNames !== null) {
      for (const mask of masks) {
        if (imageOfMask.has(mask)) continue;
        const want = kind === "qata"
          ? join(imgDir, mask.slice("mask_".length))
          : join(imgDir, `${mask.slice(0, -".png".length)}.<png|tif|jpg>`);
        problems.push(new DataError(join(maskDir, mask), `image missing: no ${want}`));
      }
    }
    if (imgNames !== null && maskNames !== null && images.length === 0 && masks.length === 0) {
      layoutProblem(imgDir, "no samples found");
    }
    summary.images = images.length;
    summary.masks = masks.length;
    summary.pairs = pairs.length;
    files.push({ split, imgDir, maskDir, images, masks, pairs });
  }

  // ---- text tables (QaTa's train and val share one, read once)
  const tables = new Map<string, Split[]>();
  for (const split of SPLITS) {
    const t = textTablePath(kind, split);
    tables.set(t, [...(tables.get(t) ?? []), split]);
  }
  for (const [rel, splits] of tables) {
    const path = join(root, rel);
    // A table inside a missing split folder was already reported with that folder.
    if (!(await statOrNull(dirname(path)))?.isDirectory) continue;
    if (!(await isFile(path))) {
      layoutProblem(path, "text table missing");
      continue;
    }
    let texts: Map<string, string>;
    try {
      texts = textTableOf(await readXlsx(path), path, (key) => {
        warnings.push(`${path}: Image = ${key} appears more than once; the last row is used`);
      });
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      problems.push(e);
      continue;
    }
    for (const [key, text] of texts) {
      if (text.trim() === "") {
        problems.push(new DataError(path, `row Image = ${key} has an empty Description`));
      }
    }
    const owned = files.filter((f) => splits.includes(f.split));
    for (const f of owned) {
      const summary = summaries.find((s) => s.split === f.split)!;
      for (const { image, mask } of f.pairs) {
        if (texts.has(mask)) summary.texts++;
        else {
          problems.push(
            new DataError(join(f.imgDir, image), `no text row: ${path} has no row Image = ${mask}`),
          );
        }
      }
    }
    // Rows naming no file: only judged when every split the table serves could be listed, else
    // the rows of a missing folder would each be reported again.
    if (splits.some((s) => missingSplits.has(s))) {
      warnings.push(`${path}: rows not matched against files, a split folder it serves is missing`);
      continue;
    }
    const known = new Set<string>();
    for (const f of owned) {
      f.masks.forEach((m) => known.add(m));
      f.images.forEach((i) => known.add(maskNameFor(kind, i)));
    }
    const where = owned.map((f) => f.imgDir).join(" or ");
    for (const key of texts.keys()) {
      if (known.has(key)) continue;
      const image = kind === "qata"
        ? (key.startsWith("mask_") ? key.slice("mask_".length) : null)
        : key.replace(/\.png$/, ".<png|tif|jpg>");
      problems.push(
        new DataError(
          path,
          image === null
            ? `row Image = ${key} is not a mask name (mask_<image>) and matches no file`
            : `row Image = ${key} has no image: no ${image} in ${where} (and no mask ${key})`,
        ),
      );
    }
  }

  // ---- every listed image and mask must be a regular file (a symbolic link is taken as its
  // target): a broken or looping link, a FIFO or a device is reported here, by both modes
  const jobs: DecodeJob[] = [];
  for (const f of files) {
    const paths = [
      ...f.images.map((n) => join(f.imgDir, n)),
      ...f.masks.map((n) => join(f.maskDir, n)),
    ];
    for (const path of paths) {
      const bad = await regularFileProblem(path);
      if (bad === null) jobs.push({ split: f.split, path });
      else problems.push(new DataError(path, bad));
    }
  }
  if (o.decode === false) return report();

  // ---- decode every image and mask
  const dims = new Map<string, { width: number; height: number }>();
  let done = 0;
  for (const job of jobs) {
    try {
      // The reader reports truncated TIFF and PNG files as such (codecs.ts).
      const img = await readImage(job.path);
      dims.set(job.path, { width: img.width, height: img.height });
      decoded++;
      summaries.find((s) => s.split === job.split)!.decoded++;
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      problems.push(e);
    }
    o.onProgress?.(++done, jobs.length, job.path);
  }

  // ---- each pair as training checks it (pairProblem: the same size, or the resized mask no
  // longer lines up)
  for (const f of files) {
    const sizes = new Set<string>();
    for (const { image, mask } of f.pairs) {
      const imagePath = join(f.imgDir, image), maskPath = join(f.maskDir, mask);
      const di = dims.get(imagePath), dm = dims.get(maskPath);
      if (di) sizes.add(`${di.width}x${di.height}`);
      const bad = di && dm && pairProblem({ path: imagePath, ...di }, { path: maskPath, ...dm });
      if (bad) problems.push(bad);
    }
    summaries.find((s) => s.split === f.split)!.imageSizes = [...sizes].sort();
  }
  return report();
}

/** Problems listed in the message of {@link checkedListing} at most; the rest are counted. */
const MAX_LISTED = 20;

/**
 * The listing training uses (`deno task run`, `deno task eval`), after the checks `data:check`
 * makes short of decoding ({@link checkDataset} with `decode: false`): a data set data:check
 * refuses for its layout, pairing or text tables is refused here with the same problems.
 * Decoding and the pair check follow when the samples are first decoded, through the same
 * readSamplePair (lvit_folder.ts). Warnings (what the reader skips) are logged, at most 5.
 * @param root the data set folder; default env `LVIT_DATA`
 * @throws DataError: the problem itself when there is one, else one naming the root and
 *   listing the first {@link MAX_LISTED}
 */
export async function checkedListing(
  kind: DatasetKind,
  root: string | undefined,
  log: (line: string) => void = () => {},
): Promise<LvitDataset> {
  const base = resolveDataRoot(root);
  const r = await checkDataset(base, { kind, decode: false });
  for (const w of r.warnings.slice(0, 5)) log(`data: warning: ${w}`);
  if (r.warnings.length > 5) log(`data: ... and ${r.warnings.length - 5} more warnings`);
  const n = r.problems.length;
  if (n === 1) throw r.problems[0];
  if (n > 1) {
    const shown = r.problems.slice(0, MAX_LISTED).map((p) =>
      `- ${p.message.replaceAll("\n", "\n    ")}`
    );
    if (n > MAX_LISTED) shown.push(`- ... and ${n - MAX_LISTED} more`);
    throw new DataError(
      base,
      `${n} problems in the data set (deno task data:check ${base} --dataset ${kind} lists ` +
        `them all):\n${shown.join("\n")}` + (r.hint ? `\nhint: ${r.hint}` : ""),
    );
  }
  return await listLvitDataset(kind, base);
}
