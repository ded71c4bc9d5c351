/**
 * `deno task export <run|model.onnx> --web DIR`: a run's model (exported to ONNX as
 * `deno task export` does) or an already exported `.onnx` file, packaged as a static web page
 * (lib/export/web.ts) that segments images in the browser exactly as `predict` does. Models
 * that read text through BERT are refused (exit 2): the page ships the builtin encoder only.
 */
import { basename, join, resolve } from "node:path";
import { InputError } from "../config/errors.ts";
import { BoundedReadError, readFileBounded } from "../io/bounded.ts";
import { MAX_CHECKPOINT_BYTES } from "../io/checkpoint.ts";
import { readTextTable } from "../data/xlsx.ts";
import { decodeModel } from "../export/onnx_proto.ts";
import { onnxInputs } from "../export/onnx.ts";
import { checkWebText, WEB_MODEL_FILE, writeWebApp } from "../export/web.ts";
import { experimentModel, geometryOf } from "./experiment.ts";
import { locateCheckpoint, readRunConfig } from "./evaluate.ts";
import { exportRun, META } from "./export.ts";
import { onnxModelInfo } from "./predict_ort.ts";

/** Options of {@link exportWeb}. */
export interface WebExportOptions {
  /** The folder to write (created if needed; the page's own files in it are replaced). */
  dir: string;
  /** Weights to use instead of the run's best (or last) checkpoint (run folders only). */
  checkpoint?: string;
  /** An LViT text table (.xlsx: Image, Description) whose descriptions the page offers. */
  texts?: string;
  /** Progress lines (default: console.log). */
  log?: (line: string) => void;
}

/** What {@link exportWeb} wrote. */
export interface WebExportResult {
  /** Absolute path of the folder. */
  dir: string;
  /** Files written, relative to it. */
  files: string[];
  /** Their total size in bytes. */
  bytes: number;
  /** The model's registry name. */
  model: string;
  /** Whether the model reads text (the page then asks for a description). */
  readsText: boolean;
}

/** Whether `target` names an ONNX file rather than a run folder or checkpoint. */
function isOnnx(target: string): boolean {
  return target.toLowerCase().endsWith(".onnx");
}

/**
 * Refuses, before anything is written, a run whose model reads text through an encoder the
 * page cannot run.
 */
async function precheckRun(target: string, checkpoint: string | undefined): Promise<void> {
  const { dir } = await locateCheckpoint(target, checkpoint);
  const { config: cfg } = await readRunConfig(dir);
  if (cfg.text.encoder === "builtin") return;
  const m = experimentModel(cfg);
  const { channels, size } = geometryOf(cfg);
  if (onnxInputs(m.fn, channels, size).includes("text")) {
    checkWebText(m.name, cfg.text.encoder, join(dir, "config.yaml"));
  }
}

/**
 * Writes the web page of the run folder / checkpoint or `.onnx` file `target` into `o.dir`.
 * Bad input (no such run or file, a file that is not an exported model, a BERT text model, an
 * unreadable text table) is an InputError (exit 2).
 */
export async function exportWeb(target: string, o: WebExportOptions): Promise<WebExportResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const modelPath = join(o.dir, WEB_MODEL_FILE);
  const existing = await Deno.stat(o.dir).catch(() => null);
  if (existing && !existing.isDirectory) throw new InputError(`--web ${o.dir}: not a folder`);
  let source = target;
  if (isOnnx(target)) {
    if (o.checkpoint !== undefined) {
      throw new InputError("--checkpoint applies to run folders, not to .onnx files");
    }
  } else {
    await precheckRun(target, o.checkpoint);
    await Deno.mkdir(o.dir, { recursive: true });
    await exportRun(target, { out: modelPath, checkpoint: o.checkpoint, log });
    source = modelPath;
  }
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(source, MAX_CHECKPOINT_BYTES, "ONNX models");
  } catch (e) {
    if (e instanceof BoundedReadError) throw new InputError(e.message);
    if (e instanceof Deno.errors.NotFound) throw new InputError(`${source}: no such file`);
    throw e;
  }
  let model;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    throw new InputError(`${source}: not an ONNX model (${(e as Error).message})`);
  }
  const info = onnxModelInfo(source, model);
  checkWebText(info.model, info.text?.encoder ?? null, source);
  let texts: [string, string][] = [];
  if (o.texts !== undefined) {
    if (info.text === null) log(`export: ${info.model} reads no text; --texts ignored`);
    else texts = [...(await readTextTable(o.texts))];
  }
  if (source !== modelPath) {
    await Deno.mkdir(o.dir, { recursive: true });
    await Deno.writeFile(modelPath, bytes);
  }
  const meta = new Map((model.metadata_props ?? []).map((p) => [p.key, p.value]));
  const files = await writeWebApp(o.dir, {
    model: info.model,
    configHash: info.configHash,
    checkpoint: meta.get(META.checkpoint) ?? null,
    size: info.preprocessing.size,
    threshold: info.postprocessing.threshold ?? 0.5,
    text: info.text
      ? {
        encoder: info.text.encoder,
        tokens: info.text.tokens,
        dim: info.text.dim,
        // The builtin encoder's vocabulary seed is the experiment's seed (lazyTextEncoder).
        seed: info.config.seed,
      }
      : null,
    texts,
  });
  files.unshift(WEB_MODEL_FILE);
  let total = 0;
  for (const f of files) total += (await Deno.stat(join(o.dir, f))).size;
  log(
    `export: web page of ${info.model} (${basename(source)}) -> ${o.dir} (${files.length} files, ` +
      `${(total / 1e6).toFixed(1)} MB; ${info.text ? "builtin text encoder" : "no text"}); ` +
      `serve it with: deno task serve ${o.dir}`,
  );
  return {
    dir: resolve(o.dir),
    files,
    bytes: total,
    model: info.model,
    readsText: info.text !== null,
  };
}
