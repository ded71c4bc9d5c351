/**
 * `deno task export`: a run folder's (or checkpoint's) model as an ONNX file. The weights are the
 * run's best checkpoint (else its last, or `checkpoint`), the graph is the run's model in
 * evaluation mode at the run's image size (lib/export/onnx.ts), and the model's metadata_props
 * carry what a runtime needs to use it as `deno task predict` does: the resolved config, the
 * preprocessing, the threshold and, for models that read text, the text input's layout.
 */
import { basename, extname, join, resolve } from "node:path";
import { InputError } from "../config/errors.ts";
import { MAX_CONFIG_BYTES } from "../config/load.ts";
import { readTextBounded } from "../io/bounded.ts";
import { loadCheckpoint } from "../io/checkpoint.ts";
import { stateDict } from "../models/state_dict.ts";
import { isModelState } from "../train/session.ts";
import { modelToOnnx, onnxInputs } from "../export/onnx.ts";
import { writeAtomic } from "./folder.ts";
import { experimentModel, geometryOf } from "./experiment.ts";
import { locateCheckpoint, readRunConfig } from "./evaluate.ts";
import { holdForReading } from "./state.ts";

/** Export formats. */
export const EXPORT_FORMATS = ["onnx"] as const;
/** An export format. */
export type ExportFormat = typeof EXPORT_FORMATS[number];

/** The threshold `predict` applies to the probabilities (the reference's). */
const THRESHOLD = 0.5;

/** Keys of the exported model's metadata_props that `predict --engine ort` reads. */
export const META = {
  config: "lvit.config",
  configHash: "lvit.config_hash",
  model: "lvit.model",
  options: "lvit.model_options",
  preprocessing: "lvit.preprocessing",
  postprocessing: "lvit.postprocessing",
  text: "lvit.text",
  checkpoint: "lvit.checkpoint",
} as const;

/** How images become the `image` input (stored as JSON under `lvit.preprocessing`). */
export interface Preprocessing {
  /** Input layout. */
  layout: "NCHW";
  /** Channel order of the planes: B, G, R (what cv2.imread gives the reference). */
  channel_order: "BGR";
  /** Height and width the image is resized to. */
  size: number;
  /** The resize. */
  resize: string;
  /** Value scaling: x / 255, no mean or deviation. */
  scale: number;
}

/** What the `probabilities` output means (JSON under `lvit.postprocessing`). */
export interface Postprocessing {
  /** Foreground where the probability exceeds this. */
  threshold: number;
  /** How `predict` maps the output back to the image. */
  resize: string;
}

/** The text input's layout (JSON under `lvit.text`; models that read text only). */
export interface TextInput {
  /** Words per sample (L). */
  tokens: number;
  /** Width of a word vector (D). */
  dim: number;
  /** The experiment's text encoder (`builtin` or `bert`), which made the training features. */
  encoder: string;
}

/** Options of {@link exportRun}. */
export interface ExportOptions {
  /** The format (only `onnx`). */
  format?: ExportFormat;
  /** Output file (default `<run folder>/export/<checkpoint name>.onnx`). */
  out?: string;
  /** Weights to use instead of the run folder's best (or last) checkpoint. */
  checkpoint?: string;
  /** Progress lines (default: console.log). */
  log?: (line: string) => void;
}

/** What {@link exportRun} wrote. */
export interface ExportResult {
  /** Absolute path of the written file. */
  out: string;
  /** Its size in bytes. */
  bytes: number;
  /** Absolute path of the checkpoint exported. */
  checkpoint: string;
  /** The registry name of the model. */
  model: string;
  /** The graph's inputs (`image`, and `text` for models that read text). */
  inputs: string[];
  /** ONNX nodes by op type. */
  onnxOps: Record<string, number>;
}

/**
 * Exports the model of the run folder or checkpoint `target` (as `predict` and `eval` locate
 * it) to an ONNX file. A checkpoint that does not fit the run's model, and a model op without an
 * ONNX mapping, are bad input (exit 2).
 */
export async function exportRun(target: string, o: ExportOptions = {}): Promise<ExportResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const format = o.format ?? "onnx";
  if (!EXPORT_FORMATS.includes(format)) {
    throw new InputError(`--format must be one of ${EXPORT_FORMATS.join(", ")} (got ${format})`);
  }
  const { dir, ckpt } = await locateCheckpoint(target, o.checkpoint);
  const { config: cfg, hash } = await readRunConfig(dir);
  const configText = await readTextBounded(
    join(dir, "config.yaml"),
    MAX_CONFIG_BYTES,
    "experiment files",
  );
  const hold = await holdForReading(dir, log);
  try {
    const model = experimentModel(cfg);
    const { channels, size } = geometryOf(cfg);
    const expected = new Map(
      stateDict(model.fn, { channels, size }).map((e) => [e.name, e.shape] as const),
    );
    const r = await loadCheckpoint(ckpt, expected, { skip: (n) => !isModelState(n) });
    const opts = model.options;
    const pre: Preprocessing = {
      layout: "NCHW",
      channel_order: "BGR",
      size,
      resize: "bilinear, cv2.INTER_LINEAR sampling (half-pixel centres, border clamp)",
      scale: 1 / 255,
    };
    const post: Postprocessing = {
      threshold: THRESHOLD,
      resize: "bilinear to the image's size (cv2.INTER_LINEAR sampling), then > threshold",
    };
    const text: TextInput = {
      tokens: (opts.textTokens as number | undefined) ?? 10,
      dim: (opts.textDim as number | undefined) ?? 768,
      encoder: cfg.text.encoder,
    };
    const metadata: Record<string, string> = {
      [META.model]: model.name,
      [META.options]: JSON.stringify(opts),
      [META.config]: configText,
      [META.configHash]: hash,
      [META.checkpoint]: basename(ckpt),
      [META.preprocessing]: JSON.stringify(pre),
      [META.postprocessing]: JSON.stringify(post),
    };
    if (onnxInputs(model.fn, channels, size).includes("text")) {
      metadata[META.text] = JSON.stringify(text);
    }
    const ex = modelToOnnx(model.fn, {
      channels,
      size,
      weights: r.values,
      name: model.name,
      doc: `${model.name}, images ${size}x${size}; output: foreground probabilities`,
      metadata,
    });
    const bytes = ex.bytes;
    const stem = basename(ckpt, extname(ckpt));
    const out = o.out ?? join(dir, "export", `${stem}.onnx`);
    const parent = resolve(out, "..");
    await Deno.mkdir(parent, { recursive: true });
    await writeAtomic(out, bytes);
    const ops = Object.fromEntries([...ex.onnxOps].sort((a, b) => b[1] - a[1]));
    log(
      `export: ${model.name} from ${ckpt} -> ${out} (ONNX opset 17, ${ex.nodes} nodes, ` +
        `${ex.weights} weights, ${(bytes.length / 1e6).toFixed(2)} MB; inputs ` +
        `${ex.inputs.join(", ")}, output probabilities; batch dimension N)`,
    );
    return {
      out: resolve(out),
      bytes: bytes.length,
      checkpoint: resolve(ckpt),
      model: model.name,
      inputs: ex.inputs,
      onnxOps: ops,
    };
  } finally {
    hold.release();
  }
}
