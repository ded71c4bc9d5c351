/**
 * `deno task predict --engine ort MODEL.onnx IMAGE...`: segments images with an exported model
 * (lib/run/export.ts) in onnxruntime-web's wasm execution provider instead of this repository's
 * engine. The model's metadata gives what `predict` takes from a run folder: the image size and
 * preprocessing, the threshold, and for models that read text the experiment's text encoder.
 * Preprocessing, text lookup and the written files are `predict`'s own (lib/run/predict.ts).
 */
import { join, resolve } from "node:path";
import { InputError } from "../config/errors.ts";
import { resolveExperimentText } from "../config/load.ts";
import type { ExperimentConfig } from "../config/schema.ts";
import { BoundedReadError, readFileBounded } from "../io/bounded.ts";
import { MAX_CHECKPOINT_BYTES } from "../io/checkpoint.ts";
import { readImage } from "../data/codecs.ts";
import { type Image8, preprocessImage, toBgr8 } from "../data/preprocess.ts";
import { encodeTexts } from "../data/text.ts";
import { importOrt, type OrtTensor } from "../deps.ts";
import { decodeModel, type ModelMsg } from "../export/onnx_proto.ts";
import { ONNX_NAMES } from "../export/onnx.ts";
import { META, type Postprocessing, type Preprocessing, type TextInput } from "./export.ts";
import { lazyTextEncoder } from "./experiment.ts";
import {
  imageTexts,
  listImages,
  type PredictedImage,
  type PredictOptions,
  type PredictResult,
  writeBatch,
  writePredictJson,
} from "./predict.ts";

/** Options of {@link predictOrt}: those of `predict` that do not choose our engine's weights. */
export type OrtPredictOptions = Omit<PredictOptions, "backend" | "checkpoint"> & {
  /** Images per run of the model (default: the experiment's batch size). */
  batch?: number;
};

/** What an exported model's metadata says about using it. */
export interface OnnxModelInfo {
  /** The registry name of the model. */
  model: string;
  /** The model's full options. */
  options: Record<string, unknown>;
  /** The experiment the model was trained in (resolved). */
  config: ExperimentConfig;
  /** Its hash. */
  configHash: string;
  /** The preprocessing of the `image` input. */
  preprocessing: Preprocessing;
  /** The meaning of the `probabilities` output. */
  postprocessing: Postprocessing;
  /** The `text` input, for models that read text. */
  text: TextInput | null;
  /** The graph's input names. */
  inputs: string[];
}

/**
 * Reads the metadata of an exported model. A file that is not an ONNX model, or one without this
 * export's metadata, is bad input naming the file.
 */
export function onnxModelInfo(path: string, model: ModelMsg): OnnxModelInfo {
  const meta = new Map((model.metadata_props ?? []).map((p) => [p.key, p.value]));
  const get = (key: string) => {
    const v = meta.get(key);
    if (v === undefined) {
      throw new InputError(
        `${path}: no '${key}' in the model's metadata; --engine ort runs models written by ` +
          `deno task export`,
      );
    }
    return v;
  };
  const json = <T>(key: string): T => {
    try {
      return JSON.parse(get(key)) as T;
    } catch (e) {
      if (e instanceof InputError) throw e;
      throw new InputError(`${path}: metadata '${key}' is not JSON (${(e as Error).message})`);
    }
  };
  const inputs = (model.graph?.input ?? []).map((i) => i.name);
  const preprocessing = json<Preprocessing>(META.preprocessing);
  if (!(Number.isInteger(preprocessing.size) && preprocessing.size > 0)) {
    throw new InputError(`${path}: metadata '${META.preprocessing}' has no image size`);
  }
  return {
    model: get(META.model),
    options: json<Record<string, unknown>>(META.options),
    config: resolveExperimentText(`${path}#${META.config}`, get(META.config)).config,
    configHash: get(META.configHash),
    preprocessing,
    postprocessing: json<Postprocessing>(META.postprocessing),
    text: inputs.includes(ONNX_NAMES.text) ? json<TextInput>(META.text) : null,
    inputs,
  };
}

/** Reads and parses an `.onnx` file (bounded like a checkpoint). */
async function readOnnx(path: string): Promise<{ bytes: Uint8Array; model: ModelMsg }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, MAX_CHECKPOINT_BYTES, "ONNX models");
  } catch (e) {
    if (e instanceof BoundedReadError) throw new InputError(e.message);
    throw e;
  }
  try {
    return { bytes, model: decodeModel(bytes) };
  } catch (e) {
    throw new InputError(`${path}: not an ONNX model (${(e as Error).message})`);
  }
}

/**
 * Predicts masks for `inputs` (image files and folders) with the exported model `modelPath` in
 * onnxruntime-web (wasm), writing the files `predict` writes to `o.out`; the result's
 * `checkpoint` is the model file.
 */
export async function predictOrt(
  modelPath: string,
  inputs: string[],
  o: OrtPredictOptions = {},
): Promise<PredictResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  if (o.text !== undefined && o.texts !== undefined) {
    throw new InputError("--text and --texts exclude each other");
  }
  const files = await listImages(inputs);
  const { bytes, model } = await readOnnx(modelPath);
  const info = onnxModelInfo(modelPath, model);
  const threshold = o.threshold ?? info.postprocessing.threshold ?? 0.5;
  if (!(threshold >= 0 && threshold < 1)) {
    throw new InputError(`--threshold must be in [0, 1) (got ${threshold})`);
  }
  const cfg = info.config;
  const texts = await imageTexts(files, info.text !== null, info.model, o, log);
  let features: Float32Array[] | null = null;
  if (texts && info.text) {
    const encoder = lazyTextEncoder(cfg, info.options, log);
    const enc = await encoder.open();
    try {
      features = await encodeTexts(enc, texts, join(cfg.data.cache_dir, "text"));
    } finally {
      await encoder.close();
    }
  }
  const ort = await importOrt();
  // One thread: the wasm build's worker threads are not what Deno runs reliably (design.md 6).
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  try {
    const out = o.out ?? "predictions";
    await Deno.mkdir(out, { recursive: true });
    const size = info.preprocessing.size, C = 3, im = C * size * size;
    const B = Math.max(1, o.batch ?? cfg.train.batch);
    const text = info.text;
    const per = text ? text.tokens * text.dim : 0;
    log(
      `predict: ${files.length} images with ${modelPath} (onnxruntime-web wasm, ${size}x${size}, ` +
        `batch ${B}) -> ${out}`,
    );
    const images: PredictedImage[] = [];
    for (let i = 0; i < files.length; i += B) {
      const n = Math.min(B, files.length - i);
      const x = new Float32Array(n * im);
      const decoded: Image8[] = [];
      for (let k = 0; k < n; k++) {
        const img = await readImage(files[i + k]);
        decoded.push(toBgr8(img));
        x.set(preprocessImage(img, size), k * im);
      }
      const feeds: Record<string, OrtTensor> = {
        [ONNX_NAMES.image]: new ort.Tensor("float32", x, [n, C, size, size]),
      };
      if (text && features) {
        const t = new Float32Array(n * per);
        for (let k = 0; k < n; k++) {
          const f = features[i + k];
          if (f.length !== per) {
            throw new InputError(
              `${modelPath}: the text encoder gives ${f.length} values per text, the model reads ` +
                `${text.tokens} x ${text.dim}`,
            );
          }
          t.set(f, k * per);
        }
        feeds[ONNX_NAMES.text] = new ort.Tensor("float32", t, [n, text.tokens, text.dim]);
      }
      const r = await session.run(feeds);
      const p = r[ONNX_NAMES.output];
      if (!p || !(p.data instanceof Float32Array) || p.dims.join() !== `${n},1,${size},${size}`) {
        throw new Error(
          `${modelPath}: output '${ONNX_NAMES.output}' is [${p?.dims}], expected ` +
            `[${n}, 1, ${size}, ${size}] float32`,
        );
      }
      const write = { threshold, out, probabilities: o.probabilities };
      images.push(...await writeBatch(files, i, decoded, p.data, size, write, texts, log));
    }
    const result: PredictResult = { checkpoint: resolve(modelPath), out: resolve(out), images };
    await writePredictJson(result, {
      engine: "onnxruntime-web (wasm)",
      model: info.model,
      config_hash: info.configHash,
      threshold,
      image_size: size,
    });
    return result;
  } finally {
    await session.release();
  }
}
