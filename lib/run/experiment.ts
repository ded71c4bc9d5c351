/**
 * The one assembly of an experiment (issue 16): a resolved config becomes its input geometry,
 * its model, its data set, its text encoder and its programs here, and every command (run,
 * eval, predict, diff, inspect, sweep) takes them from here. This is the only module besides the
 * schema that reads `model.image_size`, and the only one that states the input channel count,
 * so the four things that must agree (data resize, graph input, model option, batch buffers)
 * cannot drift apart.
 */
import { join } from "node:path";
import { type ExperimentConfig, modelOptions } from "../config/schema.ts";
import { type Backend, type BackendRequest, selectBackend } from "../backends/select.ts";
import { type ModelName, MODELS } from "../models/registry.ts";
import type { ModelFn } from "../models/count.ts";
import { TEXT_INPUT } from "../models/lvit.ts";
import { Session } from "../train/session.ts";
import { Inference } from "../train/inference.ts";
import type { Geometry, Samples } from "../train/trainer.ts";
import { RGB_CHANNELS } from "../data/codecs.ts";
import { openDataset, type OpenedDataset, type SplitData } from "../data/dataset.ts";
import { generateSynth } from "../data/synth.ts";
import { identityOf } from "../data/identity.ts";
import { resolveDataRoot } from "../data/lvit_folder.ts";
import { encodeTexts, openTextEncoder, type TextEncoder } from "../data/text.ts";
import { cacheKey } from "../data/text_cache.ts";
import { fileExists } from "./folder.ts";
import { usesSemi } from "./semi.ts";

/**
 * The input geometry of an experiment: `batch` images of `channels` x `size` x `size` (the data
 * reader resizes to `size`, the graphs are compiled for it, the batch buffers hold it).
 */
export function geometryOf(cfg: ExperimentConfig): Geometry {
  // The data pipeline makes every image RGB (grey replicated, alpha dropped), so the networks
  // read its colour planes.
  return { batch: cfg.train.batch, channels: RGB_CHANNELS, size: cfg.model.image_size };
}

/** An experiment's model: its registry name, its full options and its model function. */
export interface ExperimentModel {
  /** The registry name. */
  name: ModelName;
  /** The registry defaults with the experiment's model options over them (camelCase). */
  options: Record<string, unknown>;
  /** The model function built from those options. */
  fn: ModelFn;
}

/** The model function and options of an experiment. */
export function experimentModel(cfg: ExperimentConfig): ExperimentModel {
  const { name, options } = modelOptions(cfg);
  const entry = MODELS[name];
  const full = { ...entry.defaults, ...options } as Record<string, unknown>;
  // deno-lint-ignore no-explicit-any
  const fn = entry.build(full as any);
  return { name, options: full, fn };
}

/** What `createSession` builds for an experiment. */
export interface ExperimentSession {
  /** The backend chosen. */
  backend: Backend;
  /** The training and evaluation programs, loaded on it. */
  session: Session;
  /** The experiment's model. */
  model: ExperimentModel;
}

/** Builds the session (train + eval programs) of an experiment on a backend. */
export async function createSession(
  cfg: ExperimentConfig,
  backend: BackendRequest,
): Promise<ExperimentSession> {
  const be = await selectBackend(backend);
  const m = experimentModel(cfg);
  const geo = geometryOf(cfg);
  const s = await Session.create(be, m.fn, {
    batch: geo.batch,
    channels: geo.channels,
    height: geo.size,
    width: geo.size,
    seed: cfg.seed,
    adam: {
      beta1: cfg.train.betas[0],
      beta2: cfg.train.betas[1],
      eps: cfg.train.eps,
      weightDecay: cfg.train.weight_decay,
    },
    loss: cfg.train.loss,
    semi: usesSemi(cfg) ? { lvWeight: cfg.semi.lv_loss ? cfg.semi.lv_weight : 0 } : undefined,
  });
  return { backend: be, session: s, model: m };
}

/** What `createInference` builds for an experiment. */
export interface ExperimentInference {
  /** The backend chosen. */
  backend: Backend;
  /** The evaluation program alone, loaded on it. */
  inference: Inference;
  /** The experiment's model. */
  model: ExperimentModel;
}

/**
 * Builds an experiment's evaluation program alone (no training step: faster to build, less
 * memory), at the experiment's geometry, for predicting with a trained checkpoint.
 */
export async function createInference(
  cfg: ExperimentConfig,
  backend: BackendRequest,
): Promise<ExperimentInference> {
  const be = await selectBackend(backend);
  const m = experimentModel(cfg);
  const { batch, channels, size } = geometryOf(cfg);
  const inference = await Inference.create(be, m.fn, { batch, channels, size, seed: cfg.seed });
  return { backend: be, inference, model: m };
}

/**
 * The data root of an experiment (undefined: `LVIT_DATA`), generating the synthetic data set on
 * first use.
 */
async function dataRoot(cfg: ExperimentConfig, log: (s: string) => void) {
  const size = geometryOf(cfg).size;
  let root = cfg.data.root ?? undefined;
  if (cfg.data.dataset === "synth" && !root) {
    const s = cfg.data.synth;
    // v3: lesions one per lung, 1-3 distractors, lungs on the patch grid (v2 added LV_loss/).
    const key = (await cacheKey(["synth-v3", s.seed, s.train, s.val, s.test, size])).slice(0, 16);
    root = join(cfg.data.cache_dir, "synth", key);
    if (!(await fileExists(join(root, "synth.json")))) {
      // Generate into a fresh folder and rename, so an interrupted generation is never reused.
      // Random as well as the pid: on a shared file system, processes of two cluster nodes can
      // have the same pid.
      const tmp = `${root}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      log(`data: generating the synthetic data set (${s.train}/${s.val}/${s.test}) in ${root}`);
      const opts = { out: tmp, seed: s.seed, train: s.train, val: s.val, test: s.test, size };
      await generateSynth(opts);
      try {
        await Deno.rename(tmp, root);
      } catch (e) {
        // Another process (a parallel sweep point) finished the same set first: its copy is
        // byte-identical, keep it. Anything else in the way (a torn folder) is replaced.
        if (!(await fileExists(join(root, "synth.json")))) {
          await Deno.remove(root, { recursive: true }).catch(() => {});
          await Deno.rename(tmp, root).catch(() => {
            throw e;
          });
        }
        await Deno.remove(tmp, { recursive: true }).catch(() => {});
      }
    }
  }
  return root;
}

/** The naming rules of an experiment's data set (the generated one is laid out as QaTa). */
const dataKind = (cfg: ExperimentConfig) =>
  cfg.data.dataset === "synth" ? "qata" : cfg.data.dataset;

/**
 * What makes two experiments read the same generated data (a sweep generates each such set
 * once): the data section and the size the images are made at.
 */
export function dataKey(cfg: ExperimentConfig): unknown[] {
  return [cfg.data, geometryOf(cfg).size];
}

/** The data set of an experiment, generating the synthetic one on first use. */
export async function prepareData(
  cfg: ExperimentConfig,
  log: (s: string) => void,
): Promise<OpenedDataset> {
  const root = await dataRoot(cfg, log);
  return await openDataset(dataKind(cfg), root, geometryOf(cfg).size, {
    cacheDir: cfg.data.cache_dir,
    log,
  });
}

/**
 * The identity of an experiment's data set (lib/data/identity.ts) and its resolved root, for a
 * finished run's check before anything is opened: a listing, nothing decoded. Opened data sets
 * carry theirs (`OpenedDataset.identity`).
 */
export async function dataIdentity(
  cfg: ExperimentConfig,
  log: (s: string) => void,
): Promise<{ identity: string; root: string }> {
  const r = resolveDataRoot(await dataRoot(cfg, log));
  return { identity: await identityOf(dataKind(cfg), r), root: r };
}

/** A split plus its text features as the trainer's Samples. */
export function samples(split: SplitData, text: Float32Array[] | null): Samples {
  return { n: split.n, read: (i, x, y) => split.read(i, x, y), text };
}

/**
 * The experiment's text encoder, opened at first use and shared by the model's features and the
 * semi-supervised contrastive picks, so a run loads a BERT model once. `close` it when done.
 */
export function lazyTextEncoder(
  cfg: ExperimentConfig,
  options: Record<string, unknown>,
  log: (line: string) => void = (line) => console.log(line),
) {
  let enc: Promise<TextEncoder> | null = null;
  return {
    open: () =>
      enc ??= openTextEncoder({
        encoder: cfg.text.encoder,
        model_dir: cfg.text.model_dir,
        model: cfg.text.model ?? null,
        cacheDir: cfg.data.cache_dir,
        tokens: (options.textTokens as number | undefined) ?? 10,
        dim: (options.textDim as number | undefined) ?? 768,
        seed: cfg.seed,
      }, log),
    close: async () => {
      await enc?.then((e) => e.close?.(), () => {});
    },
  };
}

/** Text features of every sample of each split, or null when the model reads no text. */
export async function textFeaturesFor(
  cfg: ExperimentConfig,
  s: { readsInput(name: string): boolean },
  encoder: () => Promise<TextEncoder>,
  ds: OpenedDataset,
  log: (s: string) => void,
): Promise<Record<"train" | "val" | "test", Float32Array[] | null>> {
  if (!s.readsInput(TEXT_INPUT)) {
    return { train: null, val: null, test: null };
  }
  const enc = await encoder();
  const out = { train: null, val: null, test: null } as Record<
    "train" | "val" | "test",
    Float32Array[] | null
  >;
  for (const split of ["train", "val", "test"] as const) {
    out[split] = await encodeTexts(enc, ds.splits[split].texts, join(cfg.data.cache_dir, "text"));
  }
  log(`text: ${enc.id}, ${enc.tokens} x ${enc.dim} per sample`);
  return out;
}
