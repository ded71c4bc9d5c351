/**
 * A synthetic QaTa-COV19-like data set in the LViT folder layout (lvit-reference.md 4.1-4.2),
 * for running the whole pipeline without the real data.
 *
 * Each sample is a grey chest-X-ray-like image (dark lung fields on a brighter body, spine,
 * heart shadow, faint ribs, texture and noise), a lesion mask, and a QaTa-style sentence naming
 * how many lesions there are and where ("Bilateral pulmonary infection, two infected areas,
 * upper left lung and lower right lung.").
 *
 * The set is built so that the text is worth reading: each image holds 1-3 *distractor* blobs
 * drawn exactly like the lesions (same size, shape and contrast distributions) but in lung zones
 * the sentence does not name, and absent from the mask. An image-only model cannot tell them
 * apart and settles on segmenting every blob; one that reads the sentence can keep only the named
 * zones. Lesions are one per lung at most, so every location word sits at a fixed token position
 * (tokens 9-10, and 13-14 for the second lung; punctuation counts as a token).
 *
 * Locations follow the radiological convention of the real reports: the patient's **left** lung
 * is on the **right** of the image. Each lung is cut into upper / middle / lower thirds, giving
 * six zones; every blob lies wholly inside one zone, and no two blobs share a zone. The lungs
 * span the lower three quarters of the image, one on each side of the midline, so at 64x64 each
 * zone lies inside one row and one half of LViT's 4x4 grid of 16-pixel patches, the grid where
 * the text enters the model. With the lungs placed as on a full chest film (zone borders inside
 * patch rows), the text model learned the zones more slowly (README, "The two commands").
 *
 * Everything about sample `index` is a pure function of (seed, index): all draws are Philox
 * values at (seed, `Stream.data`, step = index), so samples can be rebuilt alone and in any order.
 */
import { join } from "node:path";
import { encodePng } from "../deps.ts";
import { fillNormal, Stream, uniformAt } from "../rng/philox.ts";
import { maskNameFor, type Split, splitFolder, SPLITS, textTablePath } from "./lvit_folder.ts";
import { buildXlsx } from "./xlsx_write.ts";
import { CONTRASTIVE_DIR, CONTRASTIVE_TABLE } from "./contrastive.ts";

/** Vertical thirds of a lung, top to bottom. */
export type Level = "upper" | "middle" | "lower";
/** The patient's side (left lung = right half of the image). */
export type Side = "left" | "right";
/** One of the six named lung zones. */
export interface Zone {
  level: Level;
  side: Side;
}

/** The levels in reading order, as the sentences list them. */
export const LEVELS: readonly Level[] = ["upper", "middle", "lower"];
/** The sides in the order the sentences list them (QaTa writes the left lung first). */
export const SIDES: readonly Side[] = ["left", "right"];

/** A lung field as an ellipse, in image-relative units (x, y in [0, 1], y down). */
export interface Ellipse {
  cx: number;
  cy: number;
  rx: number;
  ry: number;
}

/**
 * The two lung fields. Fixed, so a zone name always means the same image region; their thirds
 * fall on multiples of a quarter of the image height (see the module note).
 */
export const LUNGS: Readonly<Record<Side, Ellipse>> = {
  right: { cx: 0.3, cy: 0.625, rx: 0.16, ry: 0.375 },
  left: { cx: 0.7, cy: 0.625, rx: 0.16, ry: 0.375 },
};

/** A lesion or distractor: centre and base radius in pixels, and its zone. */
export interface SynthBlob {
  zone: Zone;
  x: number;
  y: number;
  radius: number;
}

/** What was drawn for one sample. */
export interface SynthSample {
  index: number;
  /** Image file name (in img/). */
  image: string;
  /** Mask file name (in labelcol/), which is also the text key. */
  mask: string;
  text: string;
  /** In the mask and named by the text. */
  lesions: SynthBlob[];
  /** Drawn like lesions, outside the named zones and absent from the mask. */
  distractors: SynthBlob[];
}

/** A rendered sample: {@link SynthSample} plus its 8-bit grey pixels. */
export interface RenderedSample extends SynthSample {
  size: number;
  /** size * size grey levels. */
  pixels: Uint8Array;
  /** size * size, 255 on lesions and 0 elsewhere (QaTa masks are 0/255). */
  maskPixels: Uint8Array;
}

/** Options of {@link generateSynth}. */
export interface SynthOptions {
  /** Output folder (the data root); must be missing or empty. */
  out: string;
  /** Seed of every draw (default 0). */
  seed?: number;
  /** Number of train samples (default 64). */
  train?: number;
  /** Number of validation samples (default 16). */
  val?: number;
  /** Number of test samples (default 16). */
  test?: number;
  /** Image side in pixels, at least {@link MIN_SIZE}. */
  size?: number;
}

/** What {@link generateSynth} wrote. */
export interface SynthSummary {
  /** The folder written (the data root). */
  out: string;
  /** The seed used. */
  seed: number;
  /** Image side in pixels. */
  size: number;
  /** Samples written per split. */
  counts: Record<Split, number>;
}

/** Defaults: small enough to generate in a second, at LViT's input size. */
export const SYNTH_DEFAULTS = { seed: 0, train: 64, val: 16, test: 16, size: 224 } as const;
/** Below this, blobs shrink to a pixel or two and zones stop being distinguishable. */
export const MIN_SIZE = 32;

const COUNT_WORDS = ["one infected area", "two infected areas", "three infected areas"];
/** Shape wobble amplitude: the radius varies by +-WOBBLE around its base. */
const WOBBLE = 0.2;
/** The visible profile fades out at this multiple of the mask radius. */
const FADE_END = 1.15;
/** Offset of the per-pixel noise in the sample's Philox sequence, past all scalar draws. */
const NOISE_OFFSET = 1 << 20;

/** The zone of an image-relative point, or null when it is outside both lungs. */
export function zoneAt(u: number, v: number): Zone | null {
  const side: Side = u < 0.5 ? "right" : "left";
  const e = LUNGS[side];
  const dx = (u - e.cx) / e.rx, dy = (v - e.cy) / e.ry;
  if (dx * dx + dy * dy > 1) return null;
  const third = Math.min(2, Math.max(0, Math.floor(((v - (e.cy - e.ry)) / (2 * e.ry)) * 3)));
  return { level: LEVELS[third], side };
}

/** The vertical band [top, bottom) of a level, image-relative. */
function levelBand(level: Level): [number, number] {
  const e = LUNGS.left; // both lungs span the same heights
  const h = (2 * e.ry) / 3;
  const i = LEVELS.indexOf(level);
  return [e.cy - e.ry + i * h, e.cy - e.ry + (i + 1) * h];
}

/**
 * The QaTa-style sentence for a set of lesion zones, e.g. "Unilateral pulmonary infection, two
 * infected areas, middle lower left lung."
 */
export function describeZones(zones: readonly Zone[]): string {
  const sides = SIDES.filter((s) => zones.some((z) => z.side === s));
  const where = sides.map((s) => {
    const levels = LEVELS.filter((l) => zones.some((z) => z.side === s && z.level === l));
    return `${levels.join(" ")} ${s} lung`;
  });
  const lateral = sides.length === 2 ? "Bilateral" : "Unilateral";
  return `${lateral} pulmonary infection, ${COUNT_WORDS[zones.length - 1]}, ${
    where.join(" and ")
  }.`;
}

/** File names of sample `index`: QaTa pairs img/<name> with labelcol/mask_<name>. */
export function sampleNames(index: number): { image: string; mask: string } {
  const image = `synth_${String(index).padStart(5, "0")}.png`;
  return { image, mask: maskNameFor("qata", image) };
}

/** Scalar draws of one sample: successive Philox uniforms at (seed, data, index). */
function drawer(seed: number, index: number): () => number {
  let k = 0;
  return () => uniformAt(seed, Stream.data, index, k++);
}

/** Places a blob of base radius `r` (relative) wholly inside `zone` of its lung. */
function placeBlob(zone: Zone, r: number, u: () => number): { cx: number; cy: number } {
  const e = LUNGS[zone.side];
  const [top, bottom] = levelBand(zone.level);
  // Margin covers the wobble and the fade, so neither the mask nor the visible blob crosses into
  // another zone or out of the lung.
  const m = r * (1 + WOBBLE) * FADE_END + 0.01;
  for (let attempt = 0; attempt < 16; attempt++) {
    const cy = top + m + (bottom - top - 2 * m) * u();
    const cx = e.cx - e.rx + m + (2 * e.rx - 2 * m) * u();
    // Inside the lung shrunk by the margin: then the whole blob is inside the lung.
    const dx = (cx - e.cx) / (e.rx - m), dy = (cy - e.cy) / (e.ry - m);
    if (dx * dx + dy * dy <= 1) return { cx, cy };
  }
  // The zone's middle column always fits (checked for the fixed geometry above).
  return { cx: e.cx, cy: (top + bottom) / 2 };
}

/** Draws zones, blobs and text of sample `index` without rendering pixels. */
function drawLayout(seed: number, index: number, size: number): {
  sample: SynthSample;
  u: () => number;
  shapes: { blob: SynthBlob; phase: number; lobes: number; contrast: number }[];
} {
  const u = drawer(seed, index);
  const pick = (n: number) => Math.min(n - 1, Math.floor(u() * n));
  const zones: Zone[] = LEVELS.flatMap((level) => SIDES.map((side) => ({ level, side })));
  // Lesions: one anywhere, or two, one per lung (QaTa's "Bilateral ..., two infected areas").
  // At most one per lung keeps every location word at a fixed token position, and the two
  // locations within the first 16 tokens.
  const nLesions = 1 + pick(2);
  const swap = (i: number, j: number) => ([zones[i], zones[j]] = [zones[j], zones[i]]);
  swap(0, pick(6));
  if (nLesions === 2) {
    const other = zones.flatMap((z, k) => (k > 0 && z.side !== zones[0].side ? [k] : []));
    swap(1, other[pick(other.length)]);
  }
  // Distractors: 1-3 in the remaining zones (partial Fisher-Yates), so about as many look-alike
  // blobs as lesions; only the sentence tells them apart.
  const nDistractors = 1 + pick(3);
  for (let i = nLesions; i < nLesions + nDistractors; i++) swap(i, i + pick(zones.length - i));
  const shapes = zones.slice(0, nLesions + nDistractors).map((zone) => {
    const r = 0.035 + 0.02 * u();
    const { cx, cy } = placeBlob(zone, r, u);
    return {
      blob: { zone, x: cx * size, y: cy * size, radius: r * size },
      phase: 2 * Math.PI * u(),
      lobes: 2 + Math.floor(u() * 3),
      // Visible but soft: about 25-40 grey levels against noise of ~9 and ribs of ~11. Lesions
      // and distractors are drawn from the same distribution.
      contrast: 0.1 + 0.06 * u(),
    };
  });
  const lesions = shapes.slice(0, nLesions).map((s) => s.blob);
  const distractors = shapes.slice(nLesions).map((s) => s.blob);
  const names = sampleNames(index);
  return {
    sample: {
      index,
      image: names.image,
      mask: names.mask,
      text: describeZones(lesions.map((b) => b.zone)),
      lesions,
      distractors,
    },
    u,
    shapes,
  };
}

function smoothstep(e0: number, e1: number, x: number): number {
  const t = Math.min(1, Math.max(0, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
}

/**
 * Renders sample `index` of the set with this seed: layout, sentence, image and mask.
 * @param size image side in pixels
 */
export function renderSample(seed: number, index: number, size: number): RenderedSample {
  const { sample, u, shapes } = drawLayout(seed, index, size);
  const S = size, inv = 1 / S;
  const img = new Float32Array(S * S);

  // Per-image variation of exposure and anatomy intensity, so images are not all alike.
  const bodyLevel = 0.58 + 0.1 * u();
  const lungDepth = 0.5 + 0.1 * u();
  const ribPhase = u(), ribFreq = 8 + 2 * u();
  // Lung texture: a few separable waves (products of row and column terms are cheap).
  const waves = 4;
  const colT = new Float32Array(waves * S), rowT = new Float32Array(waves * S);
  for (let w = 0; w < waves; w++) {
    const fx = 2 * Math.PI * (3 + 9 * u()), fy = 2 * Math.PI * (3 + 9 * u());
    const px = 2 * Math.PI * u(), py = 2 * Math.PI * u();
    for (let i = 0; i < S; i++) {
      colT[w * S + i] = Math.cos(fx * (i + 0.5) * inv + px);
      rowT[w * S + i] = Math.cos(fy * (i + 0.5) * inv + py);
    }
  }

  for (let y = 0; y < S; y++) {
    const v = (y + 0.5) * inv;
    for (let x = 0; x < S; x++) {
      const uu = (x + 0.5) * inv;
      // Torso: a soft-edged ellipse, brighter towards the middle.
      const bx = (uu - 0.5) / 0.47, by = (v - 0.75) / 0.7;
      const bd = Math.sqrt(bx * bx + by * by);
      const body = 1 - smoothstep(0.92, 1.02, bd);
      let val = 0.06 + body * (bodyLevel + 0.08 * (1 - bd));
      // Spine: a bright vertical band.
      val += body * 0.1 * Math.exp(-(((uu - 0.5) / 0.035) ** 2));
      // Lungs: darker fields with soft borders, partly covered by the heart.
      const e = uu < 0.5 ? LUNGS.right : LUNGS.left;
      const lx = (uu - e.cx) / e.rx, ly = (v - e.cy) / e.ry;
      let lung = 1 - smoothstep(0.8, 1.05, Math.sqrt(lx * lx + ly * ly));
      const hx = (uu - 0.56) / 0.13, hy = (v - 0.85) / 0.12;
      lung *= 0.45 + 0.55 * smoothstep(0.7, 1.1, Math.sqrt(hx * hx + hy * hy));
      val *= 1 - lungDepth * lung;
      if (lung > 0) {
        // Ribs: faint curved stripes, bowing down away from the spine.
        const ph = v * ribFreq - 2.5 * (uu - 0.5) ** 2 + ribPhase;
        const rib = (0.5 + 0.5 * Math.cos(2 * Math.PI * ph)) ** 4;
        let tex = 0;
        for (let w = 0; w < waves; w++) tex += colT[w * S + x] * rowT[w * S + y];
        val += lung * (0.045 * rib + 0.012 * tex);
      }
      img[y * S + x] = val;
    }
  }

  const mask = new Uint8Array(S * S);
  shapes.forEach((s, i) => {
    const isLesion = i < sample.lesions.length;
    const { x: cx, y: cy, radius } = s.blob;
    const reach = Math.ceil(radius * (1 + WOBBLE) * FADE_END) + 1;
    const x0 = Math.max(0, Math.floor(cx - reach)), x1 = Math.min(S - 1, Math.ceil(cx + reach));
    const y0 = Math.max(0, Math.floor(cy - reach)), y1 = Math.min(S - 1, Math.ceil(cy + reach));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        const r = radius * (1 + WOBBLE * Math.sin(s.lobes * Math.atan2(dy, dx) + s.phase));
        const t = Math.sqrt(dx * dx + dy * dy) / r;
        if (t >= FADE_END) continue;
        // Ground-glass opacity: brighter, with a soft rim around the mask boundary (t = 1).
        img[y * S + x] += s.contrast * smoothstep(FADE_END, 0.75, t);
        if (isLesion && t <= 1) mask[y * S + x] = 255;
      }
    }
  });

  const noise = new Float32Array(S * S);
  fillNormal(noise, seed, Stream.data, index, 0, 0.035, NOISE_OFFSET);
  const pixels = new Uint8Array(S * S);
  for (let i = 0; i < S * S; i++) {
    pixels[i] = Math.min(255, Math.max(0, Math.round((img[i] + noise[i]) * 255)));
  }
  return { ...sample, size, pixels, maskPixels: mask };
}

function checkCount(name: string, n: number, min: number): void {
  if (!Number.isInteger(n) || n < min) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${n}`);
  }
}

async function ensureEmptyDir(dir: string): Promise<void> {
  try {
    for await (const _ of Deno.readDir(dir)) {
      // Stale masks from an earlier run would be listed with the new ones; refuse to mix.
      throw new Deno.errors.AlreadyExists(`output folder ${dir} is not empty`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(dir, { recursive: true });
}

/**
 * `options` over the defaults, checked: integer counts >= 1, seed in [0, 2^32), size in
 * [MIN_SIZE, 4096].
 * @throws RangeError naming the first bad option
 */
export function checkSynthOptions(options: SynthOptions): Required<SynthOptions> {
  const o = { ...SYNTH_DEFAULTS, ...options };
  checkCount("seed", o.seed, 0);
  // Philox keys on the low 32 bits; larger seeds would silently repeat smaller ones.
  if (o.seed >= 2 ** 32) throw new RangeError(`seed must be < 2^32, got ${o.seed}`);
  checkCount("train", o.train, 1);
  checkCount("val", o.val, 1);
  checkCount("test", o.test, 1);
  checkCount("size", o.size, MIN_SIZE);
  if (o.size > 4096) throw new RangeError(`size must be <= 4096, got ${o.size}`);
  return o;
}

/**
 * Writes a synthetic QaTa-layout data set: `Train_Folder`, `Val_Folder`, `Test_Folder`, each
 * with img/ and labelcol/, plus `Train_Folder/Train_Val_text.xlsx` (train and val rows) and
 * `Test_Folder/Test_text.xlsx`, readable with `listSplit("qata", ...)`. Samples are numbered
 * across splits (train first), so sample i is the same whatever the split sizes after it.
 * Also writes `synth.json` at the root: parameters and every sample's lesions and distractors;
 * and `LV_loss/`, the contrastive label set of the semi-supervised setting
 * ({@link writeContrastiveSet}), which depends on the size only, not on the seed.
 * @param onProgress called after each sample with (done, total)
 * @throws RangeError for bad counts or size; Deno.errors.AlreadyExists for a non-empty `out`
 */
export async function generateSynth(
  options: SynthOptions,
  onProgress?: (done: number, total: number) => void,
): Promise<SynthSummary> {
  const o = checkSynthOptions(options);
  const counts: Record<Split, number> = { train: o.train, val: o.val, test: o.test };
  await ensureEmptyDir(o.out);
  const total = o.train + o.val + o.test;
  const rows: Record<Split, string[][]> = { train: [], val: [], test: [] };
  const meta: unknown[] = [];
  let index = 0;
  for (const split of SPLITS) {
    const imgDir = join(o.out, splitFolder(split), "img");
    const maskDir = join(o.out, splitFolder(split), "labelcol");
    await Deno.mkdir(imgDir, { recursive: true });
    await Deno.mkdir(maskDir, { recursive: true });
    for (let k = 0; k < counts[split]; k++, index++) {
      const s = renderSample(o.seed, index, o.size);
      const png = (data: Uint8Array) =>
        encodePng({ width: o.size, height: o.size, channels: 1, depth: 8, data });
      await Deno.writeFile(join(imgDir, s.image), png(s.pixels));
      await Deno.writeFile(join(maskDir, s.mask), png(s.maskPixels));
      rows[split].push([s.mask, s.text]);
      meta.push({
        split,
        image: s.image,
        mask: s.mask,
        text: s.text,
        lesions: s.lesions,
        distractors: s.distractors,
      });
      onProgress?.(index + 1, total);
    }
  }
  // QaTa's tables: train and val rows share Train_Val_text.xlsx, in split order.
  const tables = new Map<string, string[][]>();
  for (const split of SPLITS) {
    const table = textTablePath("qata", split);
    tables.set(table, [...(tables.get(table) ?? []), ...rows[split]]);
  }
  const header = ["Image", "Description"];
  for (const [table, tableRows] of tables) {
    await Deno.writeFile(join(o.out, table), buildXlsx(header, tableRows));
  }
  await writeContrastiveSet(join(o.out, CONTRASTIVE_DIR), o.size);
  const params = { seed: o.seed, size: o.size, counts };
  await Deno.writeTextFile(
    join(o.out, "synth.json"),
    JSON.stringify({ generator: "lib/data/synth.ts", ...params, samples: meta }, null, 1) + "\n",
  );
  return { out: o.out, ...params };
}

// ---------------------------------------------------------------- contrastive label set

/** One row of the contrastive label set: its mask file, its sentence and the zones it covers. */
export interface ContrastiveFig {
  /** Mask file name, `fig1.png` ... `fig14.png`. */
  image: string;
  text: string;
  /** The zones whose union the mask covers, in LEVELS x SIDES order. */
  zones: Zone[];
}

/**
 * The reference's 14 contrastive rows (lvit-reference.md 3.2) as [count word, left lung,
 * right lung]: "all" for the whole lung, a list of levels, or null for an uninvolved lung.
 */
const REFERENCE_FIGS: readonly [string, string | null, string | null][] = [
  ["one", "all", null],
  ["two", "upper middle lower", null],
  ["three", "upper middle lower", null],
  ["one", null, "all"],
  ["two", null, "upper middle lower"],
  ["three", null, "upper middle lower"],
  ["two", "all", "all"],
  ["two", "all", "upper middle"],
  ["two", "all", "middle lower"],
  ["two", "upper middle", "all"],
  ["two", "middle lower", "all"],
  ["three", "all", "upper middle lower"],
  ["three", "upper middle lower", "all"],
  ["four", "upper middle lower", "upper middle lower"],
];

/**
 * The contrastive rows of the synthetic set, mirroring the reference's 14 in order and wording
 * and spelled out in full in the template of {@link describeZones} (laterality, count, then the
 * levels of each named lung, left lung first). "all left lung" is kept as the reference writes
 * it rather than rewritten as "upper middle lower left lung": that keeps figs 12 and 13 distinct,
 * and with position-wise token features (the builtin encoder) it matches the generated sentences
 * better, because "all" takes one token position as a single level does. Measured over all 41
 * sentences {@link describeZones} can write for 1-3 zones, 14 tokens: the picked mask covers 92
 * of their 96 named zones (89 with "upper middle lower"), and all of a sentence's zones for 37 of
 * 41 (34).
 * The zones follow the synth's radiological convention (the patient's left lung on the image
 * right), unlike the reference figures, which draw the left lung on the image left.
 */
export const CONTRASTIVE_FIGS: readonly ContrastiveFig[] = REFERENCE_FIGS.map(
  ([count, left, right], i) => {
    const parts: string[] = [];
    const zones: Zone[] = [];
    for (const side of SIDES) {
      const spec = side === "left" ? left : right;
      if (spec === null) continue;
      const levels = spec === "all" ? LEVELS : spec.split(" ") as Level[];
      zones.push(...levels.map((level) => ({ level, side })));
      parts.push(`${spec} ${side} lung`);
    }
    const lateral = left !== null && right !== null ? "Bilateral" : "Unilateral";
    const areas = `${count} infected area${count === "one" ? "" : "s"}`;
    // Sort into the LEVELS x SIDES order the rest of the module uses for zone lists.
    const order = (z: Zone) => LEVELS.indexOf(z.level) * 2 + SIDES.indexOf(z.side);
    return {
      image: `fig${i + 1}.png`,
      text: `${lateral} pulmonary infection, ${areas}, ${parts.join(" and ")}.`,
      zones: zones.sort((a, b) => order(a) - order(b)),
    };
  },
);

/** Vertical samples per pixel row of a contrastive mask; horizontal coverage is exact. */
const MASK_SUBROWS = 8;

/**
 * A contrastive mask as grey levels: 255 inside the union of `zones`, 0 outside, and the pixel's
 * covered fraction in between along the edges, like the reference's anti-aliased figures (so the
 * reader's > 127 binarisation is exercised, not just passed through). Coverage is exact along
 * each of {@link MASK_SUBROWS} sample lines per pixel row: the lungs are ellipses, so a line
 * meets a lung in one interval, and the line's level comes from {@link zoneAt} itself.
 * @returns size * size grey levels
 */
export function contrastiveMaskPixels(zones: readonly Zone[], size: number): Uint8Array {
  const cover = new Float64Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let s = 0; s < MASK_SUBROWS; s++) {
      const v = (y + (s + 0.5) / MASK_SUBROWS) / size;
      for (const side of SIDES) {
        const e = LUNGS[side];
        const zone = zoneAt(e.cx, v); // the lung's own centre line: null above or below it
        if (zone === null || zone.side !== side) continue;
        if (!zones.some((z) => z.side === side && z.level === zone.level)) continue;
        const dy = (v - e.cy) / e.ry;
        const half = e.rx * Math.sqrt(Math.max(0, 1 - dy * dy));
        const a = Math.max(0, (e.cx - half) * size), b = Math.min(size, (e.cx + half) * size);
        const x0 = Math.floor(a), x1 = Math.ceil(b);
        const row = y * size;
        // Whole pixels inside the interval take a full share; only the two end pixels are cut.
        for (let x = x0; x < x1; x++) cover[row + x] += 1 / MASK_SUBROWS;
        if (x1 > x0) {
          cover[row + x0] -= (a - x0) / MASK_SUBROWS;
          cover[row + x1 - 1] -= (x1 - b) / MASK_SUBROWS;
        }
      }
    }
  }
  const out = new Uint8Array(size * size);
  for (let i = 0; i < out.length; i++) {
    out[i] = Math.round(255 * Math.min(1, Math.max(0, cover[i])));
  }
  return out;
}

/** A 256-entry grey palette: index i is grey level i. */
const GREY_PALETTE: number[][] = Array.from({ length: 256 }, (_, i) => [i, i, i]);

/**
 * Writes the synthetic contrastive label set into `dir` (created if missing): `fig1.png` ...
 * `fig14.png` as size x size 8-bit palette PNGs (the reference figures' format) drawn by
 * {@link contrastiveMaskPixels}, and `LV_loss.xlsx` (one sheet, Image | Description, in
 * {@link CONTRASTIVE_FIGS} order). Depends on `size` only; the bytes are the same on every run.
 * Read it back with `readContrastiveSet` (contrastive.ts).
 * @returns the rows written
 */
export async function writeContrastiveSet(
  dir: string,
  size: number,
): Promise<readonly ContrastiveFig[]> {
  checkCount("size", size, 1);
  await Deno.mkdir(dir, { recursive: true });
  for (const fig of CONTRASTIVE_FIGS) {
    const data = contrastiveMaskPixels(fig.zones, size);
    const png = encodePng({
      width: size,
      height: size,
      channels: 1,
      depth: 8,
      data,
      palette: GREY_PALETTE,
    });
    await Deno.writeFile(join(dir, fig.image), png);
  }
  await Deno.writeFile(
    join(dir, CONTRASTIVE_TABLE),
    buildXlsx(["Image", "Description"], CONTRASTIVE_FIGS.map((f) => [f.image, f.text])),
  );
  return CONTRASTIVE_FIGS;
}
