/**
 * Segments images nobody labelled with a trained run (`deno task predict`): each image is read
 * (PNG, TIFF or JPEG of any size), preprocessed exactly as the run's data were (BGR, bilinear
 * resize to `model.image_size`, / 255), run through the eval program in batches of the run's
 * batch size, and written back at its own size:
 *
 * - `<stem>.png`: the mask, 0/255. The probability map is resized to the image's size with the
 *   same bilinear interpolation as the input (cv2.INTER_LINEAR semantics: half-pixel centres,
 *   border clamp), then thresholded (`> threshold`), which is what a user of the reference would
 *   do with `cv2.resize` on its output.
 * - `<stem>_overlay.png`: the image with the mask's contour in red.
 * - `<stem>_prob.png` (with `probabilities`): the resized probabilities as 8-bit grey,
 *   round(p * 255).
 * - `predict.json`: checkpoint, config hash, threshold, and per image its size, foreground share
 *   and text.
 *
 * Models that read text take one sentence for every image (`text`) or a table in the
 * reference's xlsx layout (`texts`: columns Image and Description, looked up by file name,
 * file stem or `mask_` + name, the ways the reference's tables name an image's mask).
 */
import { basename, extname, join, resolve } from "node:path";
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import { loadWeights } from "../train/weights.ts";
import { TEXT_INPUT } from "../models/lvit.ts";
import { readImage, RGB_CHANNELS } from "../data/codecs.ts";
import { type Image8, preprocessImage, toBgr8 } from "../data/preprocess.ts";
import { readTextTable } from "../data/xlsx.ts";
import { encodeTexts } from "../data/text.ts";
import { encodePng } from "../deps.ts";
import { maskOverlayRgb } from "../report/images.ts";
import { writeAtomic } from "./folder.ts";
import { createInference, geometryOf, lazyTextEncoder } from "./experiment.ts";
import { locateCheckpoint, readRunConfig } from "./evaluate.ts";
import { holdForReading } from "./state.ts";

/** Image files a folder argument contributes (by extension, case-insensitive). */
const IMAGE_EXTENSIONS = new Set([".png", ".tif", ".tiff", ".jpg", ".jpeg"]);

/** Options of {@link predict}. */
export interface PredictOptions {
  /** One description for every image (models that read text). */
  text?: string;
  /** An xlsx table in the reference's layout (Image, Description) with a row per image. */
  texts?: string;
  /** Output folder (default `predictions`). */
  out?: string;
  /** Foreground where the probability exceeds this (default 0.5, the reference's). */
  threshold?: number;
  /** Also write the probabilities as 8-bit grey PNGs. */
  probabilities?: boolean;
  /** Backend to run on (default: the run's `backend`). */
  backend?: BackendRequest;
  /** Weights to use instead of the run folder's best (or last) checkpoint. */
  checkpoint?: string;
  /** Progress lines (default: console.log). */
  log?: (line: string) => void;
}

/** What was written for one image. */
export interface PredictedImage {
  /** The image file read. */
  file: string;
  /** Its width, which the written files share. */
  width: number;
  /** Its height, which the written files share. */
  height: number;
  /** Share of the image's pixels predicted foreground. */
  foreground: number;
  /** Path of the 0/255 mask PNG. */
  mask: string;
  /** Path of the overlay PNG. */
  overlay: string;
  /** Path of the probability PNG (with `probabilities`). */
  probabilities?: string;
  /** The description the model read (models that read text). */
  text?: string;
}

/** A prediction run: the weights used, the output folder and each image's files. */
export interface PredictResult {
  /** Absolute path of the checkpoint read. */
  checkpoint: string;
  /** Absolute path of the output folder. */
  out: string;
  /** One entry per image, in input order. */
  images: PredictedImage[];
}

/** The image files of the arguments: files as given, folders' images sorted by name. */
export async function listImages(inputs: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of inputs) {
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(p);
    } catch {
      throw new InputError(`${p}: no such file or folder`);
    }
    if (st.isDirectory) {
      const names: string[] = [];
      for await (const e of Deno.readDir(p)) {
        if (!e.isDirectory && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) {
          names.push(e.name);
        }
      }
      names.sort();
      if (names.length === 0) {
        throw new InputError(`${p}: holds no .png, .tif, .tiff, .jpg or .jpeg files`);
      }
      files.push(...names.map((n) => join(p, n)));
    } else files.push(p);
  }
  if (files.length === 0) throw new InputError("predict: no images given");
  const stems = new Map<string, string>();
  for (const f of files) {
    const s = stemOf(f);
    const other = stems.get(s);
    if (other !== undefined) {
      throw new InputError(`${f} and ${other} would both write ${s}.png; predict them separately`);
    }
    stems.set(s, f);
  }
  return files;
}

function stemOf(path: string): string {
  const b = basename(path);
  return b.slice(0, b.length - extname(b).length);
}

/**
 * The description of `file` in a text table: by file name, else by stem (MoNuSeg's tables name
 * the `.png` masks of `.tif` images), else as `mask_<name>` (QaTa-COV19's masks).
 */
function lookupText(table: Map<string, string>, file: string, tablePath: string): string {
  const name = basename(file), stem = stemOf(file);
  const exact = table.get(name) ?? table.get(`mask_${name}`);
  if (exact !== undefined) return exact;
  for (const [k, v] of table) {
    const ks = stemOf(k);
    if (ks === stem || ks === `mask_${stem}`) return v;
  }
  throw new InputError(
    `${file}: no row for ${name} (nor ${stem}.* or mask_${stem}.*) in the Image column of ` +
      tablePath,
  );
}

/**
 * Bilinear resize of a float plane with cv2.INTER_LINEAR's sampling (half-pixel centres, border
 * clamp), as `resizeLinear` does for 8-bit images; no rounding.
 */
export function resizePlane(
  src: Float32Array,
  sw: number,
  sh: number,
  dw: number,
  dh: number,
): Float32Array {
  const out = new Float32Array(dw * dh);
  const fx = sw / dw, fy = sh / dh;
  const x0 = new Int32Array(dw), x1 = new Int32Array(dw), ax = new Float64Array(dw);
  for (let x = 0; x < dw; x++) {
    const s = (x + 0.5) * fx - 0.5;
    const i = Math.floor(s);
    ax[x] = s - i;
    x0[x] = Math.min(Math.max(i, 0), sw - 1);
    x1[x] = Math.min(Math.max(i + 1, 0), sw - 1);
  }
  for (let y = 0; y < dh; y++) {
    const s = (y + 0.5) * fy - 0.5;
    const i = Math.floor(s);
    const ay = s - i;
    const r0 = Math.min(Math.max(i, 0), sh - 1) * sw,
      r1 = Math.min(Math.max(i + 1, 0), sh - 1) * sw;
    for (let x = 0; x < dw; x++) {
      const top = src[r0 + x0[x]] * (1 - ax[x]) + src[r0 + x1[x]] * ax[x];
      const bottom = src[r1 + x0[x]] * (1 - ax[x]) + src[r1 + x1[x]] * ax[x];
      out[y * dw + x] = top * (1 - ay) + bottom * ay;
    }
  }
  return out;
}

function greyPng(width: number, height: number, data: Uint8Array): Uint8Array {
  return encodePng({ width, height, channels: 1, depth: 8, data });
}

/**
 * The description of every image for a model that reads text (`o.text` for all, or the rows of
 * the table `o.texts`), else null (a note when texts were given anyway). A model that reads text
 * without any is bad input naming `modelName`.
 */
export async function imageTexts(
  files: string[],
  readsText: boolean,
  modelName: string,
  o: Pick<PredictOptions, "text" | "texts">,
  log: (line: string) => void,
): Promise<string[] | null> {
  if (!readsText) {
    if (o.text !== undefined || o.texts !== undefined) {
      log(`predict: ${modelName} reads no text; --text/--texts ignored`);
    }
    return null;
  }
  if (o.texts !== undefined) {
    const table = await readTextTable(o.texts);
    return files.map((f) => lookupText(table, f, o.texts!));
  }
  if (o.text !== undefined) return files.map(() => o.text!);
  throw new InputError(
    `${modelName} reads text: pass --text "..." (one sentence for every image) or ` +
      `--texts TABLE.xlsx (columns Image and Description)`,
  );
}

/** Where and how {@link writePrediction} writes one image's results. */
export interface WriteOptions {
  /** Foreground where the resized probability exceeds this. */
  threshold: number;
  /** Output folder. */
  out: string;
  /** Also write the probabilities as 8-bit grey. */
  probabilities?: boolean;
  /** The description the model read, recorded in the result. */
  text?: string;
}

/**
 * Writes the predictions of one batch (`files[first + k]` is plane k of `p`), logging each; the
 * same for both engines.
 */
export async function writeBatch(
  files: readonly string[],
  first: number,
  decoded: readonly Image8[],
  p: Float32Array,
  size: number,
  o: Omit<WriteOptions, "text">,
  texts: readonly string[] | null | undefined,
  log: (line: string) => void,
): Promise<PredictedImage[]> {
  const items: PredictedImage[] = [];
  for (let k = 0; k < decoded.length; k++) {
    const j = first + k;
    const item = await writePrediction(files[j], decoded[k], p, k, size, {
      ...o,
      text: texts?.[j],
    });
    items.push(item);
    log(
      `predict: ${j + 1}/${files.length} ${basename(files[j])} ` +
        `(${item.width}x${item.height}): ${(100 * item.foreground).toFixed(1)}% foreground`,
    );
  }
  return items;
}

/** Writes `predict.json` into the result's folder: the result and the settings that made it. */
export async function writePredictJson(
  result: PredictResult,
  settings: Record<string, unknown>,
): Promise<void> {
  const interpolation = "bilinear (cv2.INTER_LINEAR sampling) for the input and the probabilities";
  await writeAtomic(
    join(result.out, "predict.json"),
    JSON.stringify({ ...result, ...settings, interpolation }, null, 2) + "\n",
  );
}

/**
 * Writes the mask, overlay (and probabilities) of `file` from plane `k` of the model's output
 * `p` ([n, 1, size, size]), resized to the image's own size and thresholded.
 */
export async function writePrediction(
  file: string,
  img: Image8,
  p: Float32Array,
  k: number,
  size: number,
  o: WriteOptions,
): Promise<PredictedImage> {
  const { width: w, height: h } = img;
  const plane = size * size;
  const prob = resizePlane(p.subarray(k * plane, (k + 1) * plane), size, size, w, h);
  const mask = new Uint8Array(w * h);
  let fg = 0;
  for (let q = 0; q < mask.length; q++) {
    if (prob[q] > o.threshold) {
      mask[q] = 255;
      fg++;
    }
  }
  const stem = stemOf(file);
  const item: PredictedImage = {
    file,
    width: w,
    height: h,
    foreground: fg / mask.length,
    mask: join(o.out, `${stem}.png`),
    overlay: join(o.out, `${stem}_overlay.png`),
    ...(o.text !== undefined ? { text: o.text } : {}),
  };
  await writeAtomic(item.mask, greyPng(w, h, mask));
  const rgb = maskOverlayRgb(img, mask);
  await writeAtomic(
    item.overlay,
    encodePng({ width: w, height: h, channels: RGB_CHANNELS, depth: 8, data: rgb }),
  );
  if (o.probabilities) {
    item.probabilities = join(o.out, `${stem}_prob.png`);
    const g = new Uint8Array(w * h);
    for (let q = 0; q < g.length; q++) {
      g[q] = Math.round(Math.min(1, Math.max(0, prob[q])) * 255);
    }
    await writeAtomic(item.probabilities, greyPng(w, h, g));
  }
  return item;
}

/**
 * Predicts masks for `inputs` (image files and folders of images) with the run folder or
 * checkpoint `target`, writing them to `o.out`. Bad input (an unreadable image, a missing text,
 * a model that reads text without one) throws InputError/DataError before anything is written
 * for that image.
 */
export async function predict(
  target: string,
  inputs: string[],
  o: PredictOptions = {},
): Promise<PredictResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const threshold = o.threshold ?? 0.5;
  if (!(threshold >= 0 && threshold < 1)) {
    throw new InputError(`--threshold must be in [0, 1) (got ${o.threshold})`);
  }
  if (o.text !== undefined && o.texts !== undefined) {
    throw new InputError("--text and --texts exclude each other");
  }
  const files = await listImages(inputs);
  const { dir, ckpt } = await locateCheckpoint(target, o.checkpoint);
  const { config: cfg, hash } = await readRunConfig(dir);
  const out = o.out ?? "predictions";
  const hold = await holdForReading(dir, log);
  // The evaluation program alone: predicting needs no training step.
  const { backend, inference: m, model } = await createInference(cfg, o.backend ?? cfg.backend)
    .catch((e) => {
      hold.release();
      throw e;
    });
  try {
    // Strict: the checkpoint's model state, trainer state left out.
    await loadWeights(m, ckpt);
    // Texts: read and encoded before any image, so a missing one fails before output.
    const readsText = m.program.program.leaves.has(TEXT_INPUT);
    const texts = await imageTexts(files, readsText, model.name, o, log);
    let features: Float32Array[] | null = null;
    if (texts) {
      const encoder = lazyTextEncoder(cfg, model.options, log);
      const enc = await encoder.open();
      try {
        features = await encodeTexts(enc, texts, join(cfg.data.cache_dir, "text"));
      } finally {
        await encoder.close();
      }
    }
    await Deno.mkdir(out, { recursive: true });
    const { batch: B, channels, size } = geometryOf(cfg);
    const plane = size * size, im = channels * plane;
    const x = new Float32Array(B * im);
    const per = features?.[0]?.length ?? 0;
    const t = features ? new Float32Array(B * per) : null;
    const images: PredictedImage[] = [];
    log(
      `predict: ${files.length} images with ${ckpt} (${backend.name}, ${size}x${size}, ` +
        `batch ${B}) -> ${out}`,
    );
    for (let i = 0; i < files.length; i += B) {
      const idx = Array.from({ length: Math.min(B, files.length - i) }, (_, k) => i + k);
      const decoded: Image8[] = [];
      for (let k = 0; k < idx.length; k++) {
        const img = await readImage(files[idx[k]]);
        decoded.push(toBgr8(img));
        x.set(preprocessImage(img, size), k * im);
        if (t && features) t.set(features[idx[k]], k * per);
      }
      // A short last batch repeats its last image, as evaluation does (copied, not read again).
      const last = idx.length - 1;
      for (let k = idx.length; k < B; k++) {
        x.copyWithin(k * im, last * im, (last + 1) * im);
        t?.copyWithin(k * per, last * per, (last + 1) * per);
      }
      const p = (await m.forward(x, t ? { [TEXT_INPUT]: t } : {})).probabilities;
      const write = { threshold, out, probabilities: o.probabilities };
      images.push(...await writeBatch(files, i, decoded, p, size, write, texts, log));
    }
    const result: PredictResult = { checkpoint: resolve(ckpt), out: resolve(out), images };
    await writePredictJson(result, { config_hash: hash, threshold, image_size: size });
    return result;
  } finally {
    m.destroy();
    hold.release();
  }
}
