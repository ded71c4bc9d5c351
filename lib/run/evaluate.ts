/**
 * Re-evaluates a checkpoint of a run folder on a split with the reference's test rules
 * (lvit-reference.md 6: prob > 0.5, per-image Dice and IoU, plain mean) and the pooled Dice and
 * IoU (pixel counts summed over the split), writing the prediction PNGs and an
 * `eval/<split>-<checkpoint>.json` next to the run's other files; `textAblation` scores a
 * text-guided model with other images' texts or none, to show how much it relies on them.
 */
import { basename, dirname, join } from "node:path";
import { MAX_CONFIG_BYTES, resolveExperimentText } from "../config/load.ts";
import { BoundedReadError, readTextBounded } from "../io/bounded.ts";
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import { isPthPath } from "../io/pth.ts";
import { loadWeights } from "../train/weights.ts";
import { scoreSplit } from "../train/trainer.ts";
import {
  createInference,
  geometryOf,
  lazyTextEncoder,
  prepareData,
  samples,
  textFeaturesFor,
} from "./experiment.ts";
import { checkDataIdentity } from "./checkpoint_meta.ts";
import { holdForReading } from "./state.ts";
import type { ExperimentConfig } from "../config/schema.ts";
import { fileExists, savePrediction, writeAtomic } from "./folder.ts";
import { ablateTexts, changedTexts, type TextAblation } from "./text_ablation.ts";

/** Options of `evaluate`. */
export interface EvalOptions {
  /** The split to score (default: the run config's `eval.split`). */
  split?: "test" | "val" | "train";
  /** Where to run (default: the run config's `backend`). */
  backend?: BackendRequest;
  /** Receives progress and the result line (default: console.log). */
  log?: (line: string) => void;
  /** Write prediction PNGs (default true). */
  predictions?: boolean;
  /** Score a checkpoint holding NaN or infinite weights (default: refused, exit 2). */
  allowNonFinite?: boolean;
  /**
   * Score these weights (a .safetensors file or an official PyTorch .pth, lib/io/pth.ts) with
   * the run folder's model and data instead of the folder's own checkpoint.
   */
  checkpoint?: string;
  /**
   * Score with texts that are not the images' own (lib/run/text_ablation.ts): `shift` gives each
   * image the next image's text, `zeros` all-zero features. Written to
   * `eval/<split>-<checkpoint>-text-<mode>.json`; refused (exit 2) for a model that reads no text.
   */
  textAblation?: TextAblation;
}

/** The scores `evaluate` computed, as written to the run folder. */
export interface EvalResult {
  /** The split scored. */
  split: string;
  /** The checkpoint file whose weights were scored. */
  checkpoint: string;
  /** Number of images scored. */
  n: number;
  /** Per-image means (the reference's metric; f1 = dice). */
  dice: number;
  /** Per-image mean IoU. */
  iou: number;
  /** Per-image mean F1 (equal to `dice`, reported under both names as the reference does). */
  f1: number;
  /** The text ablation scored with, if any, and how many images got features not their own. */
  text_ablation?: { mode: TextAblation; changed: number };
  /** Dice and IoU of the pixel counts summed over the split. */
  pooled: { dice: number; iou: number };
}

/**
 * The run folder and checkpoint a target names (a run folder, or a .safetensors or .pth inside
 * its checkpoints/), or the run folder and `checkpoint` when one is given.
 */
export async function locateCheckpoint(
  target: string,
  checkpoint?: string,
): Promise<{ dir: string; ckpt: string }> {
  if (checkpoint !== undefined) {
    if (!(await fileExists(checkpoint))) throw new InputError(`${checkpoint}: no such checkpoint`);
    return { dir: target, ckpt: checkpoint };
  }
  if (target.endsWith(".safetensors") || isPthPath(target)) {
    if (!(await fileExists(target))) throw new InputError(`${target}: no such checkpoint`);
    return { dir: dirname(dirname(target)), ckpt: target };
  }
  const best = join(target, "checkpoints", "best.safetensors");
  const last = join(target, "checkpoints", "last.safetensors");
  if (await fileExists(best)) return { dir: target, ckpt: best };
  if (await fileExists(last)) return { dir: target, ckpt: last };
  throw new InputError(
    `${target}: not a run folder with checkpoints (expected checkpoints/best.safetensors or ` +
      `checkpoints/last.safetensors and config.yaml, as written by deno task run)`,
  );
}

/** The resolved config of a run folder (its config.yaml) and its full hash. */
export async function readRunConfig(
  dir: string,
): Promise<{ config: ExperimentConfig; hash: string }> {
  const configPath = join(dir, "config.yaml");
  let text: string;
  try {
    text = await readTextBounded(configPath, MAX_CONFIG_BYTES, "experiment files");
  } catch (e) {
    if (e instanceof BoundedReadError && !e.notFound) throw new InputError(e.message);
    throw new InputError(`${configPath}: missing; the checkpoint must sit in a run folder`);
  }
  const exp = resolveExperimentText(configPath, text);
  return { config: exp.config, hash: exp.fullHash };
}

/** Evaluates `target` (run folder or checkpoint file) on a split. */
export async function evaluate(target: string, o: EvalOptions = {}): Promise<EvalResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const { dir, ckpt } = await locateCheckpoint(target, o.checkpoint);
  const cfg = (await readRunConfig(dir)).config;
  const split = o.split ?? cfg.eval.split;
  // A shared hold on the run folder: no run trains in it (or --force empties it) meanwhile, and
  // a folder a run is training is refused (exit 2, naming the run's process).
  const hold = await holdForReading(dir, log);
  try {
    return await evaluateHeld(ckpt, dir, cfg, split, o, log);
  } finally {
    hold.release();
  }
}

async function evaluateHeld(
  ckpt: string,
  dir: string,
  cfg: ExperimentConfig,
  split: "test" | "val" | "train",
  o: EvalOptions,
  log: (line: string) => void,
): Promise<EvalResult> {
  const ds = await prepareData(cfg, log);
  // The evaluation program alone: scoring needs no training step.
  let built: Awaited<ReturnType<typeof createInference>>;
  try {
    built = await createInference(cfg, o.backend ?? cfg.backend);
  } catch (e) {
    ds.close();
    throw e;
  }
  const { backend, inference: s, model } = built;
  try {
    // last.safetensors also holds the trainer's state (Adam moments, accumulators): left out.
    const r = await loadWeights(s, ckpt, { allowNonFinite: o.allowNonFinite });
    // Scored on the data set it was trained on, or refused with both identities.
    checkDataIdentity(ckpt, r.metadata.get("data_identity"), ds.identity, ds.root, "");
    const encoder = lazyTextEncoder(cfg, model.options, log);
    const text = await textFeaturesFor(cfg, s, encoder.open, ds, log).finally(encoder.close);
    const geo = geometryOf(cfg), size = geo.size;
    const keys = ds.splits[split].keys;
    const name = basename(ckpt).replace(/\.(safetensors|pth\.tar|pth|pt|ckpt)$/, "") +
      (o.textAblation ? `-text-${o.textAblation}` : "");
    const predDir = join(dir, "eval", `${split}-${name}`);
    let texts = text[split];
    let ablation: EvalResult["text_ablation"];
    if (o.textAblation) {
      if (texts === null) {
        throw new InputError(
          `--text-ablation ${o.textAblation}: ${cfg.model.name} reads no text; nothing to ablate`,
        );
      }
      ablation = { mode: o.textAblation, changed: changedTexts(texts, o.textAblation) };
      texts = ablateTexts(texts, o.textAblation);
      log(
        `text ablation ${o.textAblation}: ${ablation.changed} of ${texts.length} images scored ` +
          "with text features not their own",
      );
    }
    const res = await scoreSplit(
      s,
      samples(ds.splits[split], texts),
      geo,
      "test",
      async (i, p) => {
        if (o.predictions !== false) await savePrediction(predDir, keys[i], p, size);
      },
    );
    const out: EvalResult = {
      split,
      checkpoint: ckpt,
      n: ds.splits[split].n,
      dice: res.mean.dice,
      iou: res.mean.iou,
      f1: res.mean.dice,
      pooled: { dice: res.pooled.dice, iou: res.pooled.iou },
      ...(ablation ? { text_ablation: ablation } : {}),
    };
    await writeAtomic(
      join(dir, "eval", `${split}-${name}.json`),
      JSON.stringify(out, null, 2) + "\n",
    );
    log(
      `${split} (${out.n} images, ${name}, ${backend.name}): dice ${out.dice.toFixed(4)}  iou ${
        out.iou.toFixed(4)
      } (per-image mean) | pooled dice ${out.pooled.dice.toFixed(4)}  iou ${
        out.pooled.iou.toFixed(4)
      }`,
    );
    return out;
  } finally {
    s.destroy();
    ds.close();
  }
}
