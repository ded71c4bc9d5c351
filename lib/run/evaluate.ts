/**
 * Re-evaluates a checkpoint of a run folder on a split with the reference's test rules
 * (lvit-reference.md 6: prob > 0.5, per-image Dice and IoU, plain mean) and the pooled Dice and
 * IoU (pixel counts summed over the split), writing the prediction PNGs and an
 * `eval/<split>-<checkpoint>.json` next to the run's other files.
 */
import { basename, dirname, join } from "node:path";
import { resolveExperimentText } from "../config/load.ts";
import { InputError } from "../config/errors.ts";
import type { BackendRequest } from "../backends/select.ts";
import { loadCheckpoint } from "../io/checkpoint.ts";
import { isModelState } from "../train/session.ts";
import { scoreSplit } from "../train/trainer.ts";
import { createSession, lazyTextEncoder, prepareData, samples, textFeaturesFor } from "./runner.ts";
import { fileExists, savePrediction, writeAtomic } from "./folder.ts";

export interface EvalOptions {
  split?: "test" | "val" | "train";
  backend?: BackendRequest;
  log?: (line: string) => void;
  /** Write prediction PNGs (default true). */
  predictions?: boolean;
}

export interface EvalResult {
  split: string;
  checkpoint: string;
  n: number;
  /** Per-image means (the reference's metric; f1 = dice). */
  dice: number;
  iou: number;
  f1: number;
  /** Dice and IoU of the pixel counts summed over the split. */
  pooled: { dice: number; iou: number };
}

/** The run folder and checkpoint a target names (a run folder or a .safetensors inside one). */
async function locate(target: string): Promise<{ dir: string; ckpt: string }> {
  if (target.endsWith(".safetensors")) {
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

/** Evaluates `target` (run folder or checkpoint file) on a split. */
export async function evaluate(target: string, o: EvalOptions = {}): Promise<EvalResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const { dir, ckpt } = await locate(target);
  const configPath = join(dir, "config.yaml");
  let text: string;
  try {
    text = await Deno.readTextFile(configPath);
  } catch {
    throw new InputError(`${configPath}: missing; the checkpoint must sit in a run folder`);
  }
  const exp = resolveExperimentText(configPath, text);
  const cfg = exp.config;
  const split = o.split ?? cfg.eval.split;
  const ds = await prepareData(cfg, log);
  const { backend, session: s, model } = await createSession(cfg, o.backend ?? cfg.backend);
  try {
    // last.safetensors also holds the trainer's state (Adam moments, accumulators).
    const r = await loadCheckpoint(ckpt, s.leafShapes(true), { skip: (n) => !isModelState(n) });
    s.loadState(r.values);
    const encoder = lazyTextEncoder(cfg, model.options, log);
    const text = await textFeaturesFor(cfg, s, encoder.open, ds, log).finally(encoder.close);
    const size = cfg.model.image_size;
    const keys = ds.splits[split].keys;
    const name = basename(ckpt).replace(/\.safetensors$/, "");
    const predDir = join(dir, "eval", `${split}-${name}`);
    const res = await scoreSplit(
      s,
      samples(ds.splits[split], text[split]),
      cfg.train.batch,
      size,
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
