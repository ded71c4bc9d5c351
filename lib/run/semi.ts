/**
 * What the runner adds for semi-supervised training (lvit-reference.md 3.2; issue 7): the
 * seeded labeled/unlabeled split of the train split (recorded in the run folder), the choice of
 * a contrastive mask per unlabeled image by text similarity, and the pseudo-label files that
 * make a resumed run continue with exactly the labels the interrupted one used.
 */
import { join } from "node:path";
import type { ExperimentConfig } from "../config/schema.ts";
import type { OpenedDataset } from "../data/dataset.ts";
import { readContrastiveSet } from "../data/contrastive.ts";
import { encodeTexts, type TextEncoder } from "../data/text.ts";
import { permutation } from "../rng/shuffle.ts";
import { pickContrastive } from "../train/epi.ts";
import type { SemiPlan } from "../train/trainer.ts";
import { writeAtomic } from "./folder.ts";
import { InputError } from "../config/errors.ts";

/** Whether the experiment trains on unlabeled images at some point. */
export function usesSemi(cfg: ExperimentConfig): boolean {
  return cfg.train.labeled_fraction < 1 && cfg.semi.prototype_epochs < cfg.train.epochs;
}

/**
 * The labeled subset: the first round(n * fraction) samples of a seeded permutation (epoch
 * counter 0, which no training epoch uses), sorted; the rest are unlabeled.
 */
export function splitLabeled(n: number, fraction: number, seed: number) {
  const k = Math.min(n, Math.max(1, Math.round(n * fraction)));
  const order = permutation(n, seed, 0);
  const labeled = order.slice(0, k).sort((a, b) => a - b);
  const unlabeled = order.slice(k).sort((a, b) => a - b);
  return { labeled, unlabeled };
}

/**
 * Builds the plan: the split (written to `labeled.json` in the run folder) and, with the LV
 * loss on, each unlabeled image's contrastive mask, chosen by the cosine similarity of its
 * text features with the contrastive texts (both through the experiment's text encoder;
 * `text.train` passes the train split's features when the model already has them).
 */
export async function semiPlan(
  cfg: ExperimentConfig,
  ds: OpenedDataset,
  runDir: string,
  text: { train: Float32Array[] | null; encoder: () => Promise<TextEncoder> },
  log: (s: string) => void,
): Promise<SemiPlan> {
  const train = ds.splits.train;
  const { labeled, unlabeled } = splitLabeled(train.n, cfg.train.labeled_fraction, cfg.seed);
  await writeAtomic(
    join(runDir, "labeled.json"),
    JSON.stringify(
      {
        fraction: cfg.train.labeled_fraction,
        seed: cfg.seed,
        labeled: labeled.map((i) => train.keys[i]),
        unlabeled: unlabeled.map((i) => train.keys[i]),
      },
      null,
      1,
    ) + "\n",
  );
  const semi = cfg.semi;
  let contrastive: Float32Array[] | null = null;
  if (semi.lv_loss && usesSemi(cfg)) {
    const dir = semi.contrastive_dir ?? join(ds.root, "LV_loss");
    const set = await readContrastiveSet(dir, ds.size).catch((e) => {
      throw new InputError(
        `${(e as Error).message}\n(semi.lv_loss needs the contrastive labels: set ` +
          `semi.contrastive_dir, or semi.lv_loss: false)`,
      );
    });
    const enc = await text.encoder();
    const cache = join(cfg.data.cache_dir, "text");
    const bank = await encodeTexts(enc, set.texts, cache);
    // A model that reads text has the train features already (same encoder and settings).
    const feats = text.train
      ? unlabeled.map((i) => text.train![i])
      : await encodeTexts(enc, unlabeled.map((i) => train.texts[i]), cache);
    const picks = feats.map((f) => pickContrastive(f, bank));
    contrastive = picks.map((k) => set.masks[k]);
    const used = new Set(picks).size;
    log(
      `semi: ${labeled.length} labeled, ${unlabeled.length} unlabeled; LV loss with ` +
        `${set.keys.length} contrastive labels from ${dir} (${used} in use)`,
    );
  } else {
    log(`semi: ${labeled.length} labeled, ${unlabeled.length} unlabeled; no LV loss`);
  }
  return {
    labeled,
    unlabeled: usesSemi(cfg) ? unlabeled : [],
    prototype_epochs: semi.prototype_epochs,
    epi: semi.epi,
    epi_beta: semi.epi_beta,
    binarize: semi.binarize,
    contrastive,
  };
}

/** Pseudo labels per epoch as raw little-endian float32 files in `<run>/pseudo/`. */
export function pseudoFiles(runDir: string, length: number) {
  const file = (e: number) => join(runDir, "pseudo", `epoch-${e}.f32`);
  return {
    async savePseudo(epoch: number, labels: Float32Array) {
      await writeAtomic(
        file(epoch),
        new Uint8Array(labels.buffer, labels.byteOffset, labels.byteLength),
      );
      // An epoch needs its own labels (resume inside it) and the previous ones (EPI).
      await Deno.remove(file(epoch - 2)).catch(() => {});
    },
    async loadPseudo(epoch: number): Promise<Float32Array | null> {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(file(epoch));
      } catch {
        return null;
      }
      if (bytes.byteLength !== 4 * length) return null;
      // readFile's buffer is ours: view it, copying only when the offset forbids a view.
      const own = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
      return new Float32Array(own.buffer, own.byteOffset, length);
    },
  };
}
