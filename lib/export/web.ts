/**
 * The static web page of `deno task export --web DIR`: a folder a browser runs with no network
 * beyond the server of the folder itself (`deno task serve DIR`). It holds the page
 * (`index.html`, `style.css`, `app.js`), the preprocessing and mask arithmetic of `predict` in
 * plain JavaScript (`pipeline.js`, `png.js`), the builtin text encoder bundled from its
 * TypeScript (`text_builtin.js`), the exported model (`model.onnx`, written by the caller) with
 * what the page needs of its metadata (`model.json`), and onnxruntime-web's wasm build copied
 * from Deno's npm cache (`ort/`).
 */
import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { InputError } from "../config/errors.ts";
import { ortBrowserFiles } from "../deps.ts";
import { ONNX_NAMES } from "./onnx.ts";

/** The page's own files, copied as they are from lib/export/web/. */
export const WEB_ASSETS = [
  "index.html",
  "style.css",
  "app.js",
  "pipeline.js",
  "png.js",
  "text_builtin.js",
] as const;

/** The model's file name inside the folder. */
export const WEB_MODEL_FILE = "model.onnx";
/** onnxruntime-web's files inside the folder (app.js imports the module by this path). */
export const WEB_ORT = {
  module: "ort/ort.wasm.bundle.min.mjs",
  wasm: "ort/ort-wasm-simd-threaded.wasm",
  notice: "ort/NOTICE.txt",
} as const;

/** What the page reads from `model.json`. */
export interface WebModelJson {
  /** Layout version of this file. */
  format: "lvit-web/1";
  /** Registry name of the model. */
  model: string;
  /** Hash of the experiment's resolved config. */
  config_hash: string;
  /** The checkpoint's file name, when the model's metadata names it. */
  checkpoint: string | null;
  /** The ONNX file, relative to the page. */
  model_file: string;
  /** Graph input and output names. */
  inputs: { image: string; text: string | null };
  /** Graph output name (probabilities, [N, 1, size, size]). */
  output: string;
  /** The model's image size (images are resized to size x size). */
  size: number;
  /** Channel order of the `image` planes. */
  channel_order: "BGR";
  /** Foreground where the resized probability exceeds this. */
  threshold: number;
  /** The builtin text encoder's settings, for models that read text; null otherwise. */
  text: { encoder: "builtin"; tokens: number; dim: number; seed: number } | null;
  /** Descriptions the page offers to pick, [image name, description], from `--texts`. */
  texts: [string, string][];
  /** onnxruntime-web's version and files. */
  ort: { version: string; module: string; wasm: string };
}

/** What {@link writeWebApp} needs to know of the model. */
export interface WebModel {
  /** Registry name. */
  model: string;
  /** Config hash. */
  configHash: string;
  /** Checkpoint file name, if known. */
  checkpoint: string | null;
  /** Image size. */
  size: number;
  /** Threshold. */
  threshold: number;
  /** The text input's layout and encoder (`builtin` only), or null for models without text. */
  text: { encoder: string; tokens: number; dim: number; seed: number } | null;
  /** Descriptions to offer, [image name, description]. */
  texts?: [string, string][];
}

/**
 * The one encoder a page can run. BERT needs its tokenizer and a 110M-parameter model beside
 * the page; `--web` does not ship them, so such models are refused rather than half supported.
 */
export function checkWebText(model: string, encoder: string | null, file: string): void {
  if (encoder !== null && encoder !== "builtin") {
    throw new InputError(
      `${file}: --web supports models without text and models with the builtin text encoder; ` +
        `${model} reads text through the '${encoder}' encoder, whose tokenizer and model the ` +
        `page does not ship. Use deno task predict (or predict --engine ort) for this model.`,
    );
  }
}

/** Bytes of one of this module's assets, from the file system or (imported by URL) fetched. */
async function asset(name: string): Promise<Uint8Array> {
  const url = new URL(`./web/${name}`, import.meta.url);
  if (url.protocol === "file:") return await Deno.readFile(fromFileUrl(url));
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** onnxruntime-web's version, from the package.json above its dist/ folder. */
async function ortVersion(module: URL): Promise<string> {
  const pkg = JSON.parse(await Deno.readTextFile(fromFileUrl(new URL("../package.json", module))));
  return String(pkg.version);
}

/**
 * Writes the page's files, `model.json` and onnxruntime-web's into `dir` (created if needed);
 * `model.onnx` is the caller's. Returns the files written, relative to `dir`.
 */
export async function writeWebApp(dir: string, m: WebModel): Promise<string[]> {
  checkWebText(m.model, m.text?.encoder ?? null, dir);
  await Deno.mkdir(join(dir, "ort"), { recursive: true });
  const written: string[] = [];
  for (const name of WEB_ASSETS) {
    await Deno.writeFile(join(dir, name), await asset(name));
    written.push(name);
  }
  const ort = await ortBrowserFiles();
  const version = await ortVersion(ort.module);
  await Deno.copyFile(fromFileUrl(ort.module), join(dir, WEB_ORT.module));
  await Deno.copyFile(fromFileUrl(ort.wasm), join(dir, WEB_ORT.wasm));
  await Deno.writeTextFile(
    join(dir, WEB_ORT.notice),
    `onnxruntime-web ${version} (npm package onnxruntime-web, files dist/ort.wasm.bundle.min.mjs ` +
      `and dist/ort-wasm-simd-threaded.wasm)\nCopyright (c) Microsoft Corporation. MIT License.\n` +
      `https://github.com/microsoft/onnxruntime\n`,
  );
  written.push(WEB_ORT.module, WEB_ORT.wasm, WEB_ORT.notice);
  const json: WebModelJson = {
    format: "lvit-web/1",
    model: m.model,
    config_hash: m.configHash,
    checkpoint: m.checkpoint,
    model_file: WEB_MODEL_FILE,
    inputs: { image: ONNX_NAMES.image, text: m.text ? ONNX_NAMES.text : null },
    output: ONNX_NAMES.output,
    size: m.size,
    channel_order: "BGR",
    threshold: m.threshold,
    text: m.text
      ? { encoder: "builtin", tokens: m.text.tokens, dim: m.text.dim, seed: m.text.seed }
      : null,
    texts: m.texts ?? [],
    ort: { version, module: WEB_ORT.module, wasm: WEB_ORT.wasm },
  };
  await Deno.writeTextFile(join(dir, "model.json"), JSON.stringify(json, null, 2) + "\n");
  written.push("model.json");
  return written;
}
