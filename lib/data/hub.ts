/**
 * BERT models named by a Hugging Face hub id (`text.model: bert-base-uncased`,
 * `Xenova/bert-base-uncased@main`): the files the `bert` encoder reads are downloaded once into
 * `<cache_dir>/hub/<id>/<revision>/`, laid out as a local model folder, and every later run reads
 * that folder without touching the network.
 *
 * The files come from the hub's usual layout, `<endpoint>/<id>/resolve/<revision>/<file>`, the
 * same URLs transformers.js fetches; the endpoint is `https://huggingface.co` or `HF_ENDPOINT`
 * (the variable the Hugging Face libraries read, for mirrors and the tests' local stand-in). We
 * fetch them ourselves rather than through transformers.js's cache so that the download reports
 * progress, is bounded in size, lands atomically (a cut download never looks complete), and the
 * result is an ordinary folder: its features and text-cache keys (SHA-256 of the model files) are
 * exactly those of the same model given as a local folder.
 */
import { join } from "node:path";
import { DataError } from "./errors.ts";

/** The hub's address, unless HF_ENDPOINT names another. */
export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";

/** Files of a model folder: required ones, and optional ones (at least one tokenizer file). */
const REQUIRED = ["config.json", "onnx/model.onnx"];
const OPTIONAL = ["tokenizer.json", "vocab.txt", "tokenizer_config.json"];

/** No file of a BERT encoder is this large (bert-large's fp32 ONNX is ~1.3 GB). */
export const MAX_HUB_FILE_BYTES = 4 * 1024 ** 3;

/** Written last into a downloaded folder: its presence means every file arrived whole. */
const COMPLETE = ".complete.json";

/** A parsed hub model id. */
export interface HubId {
  /** `owner/name` or `name`. */
  repo: string;
  /** Branch, tag or commit; `main` by default. */
  revision: string;
}

/**
 * Parses `owner/name[@revision]` or `name[@revision]` (hub naming: letters, digits, `-`, `_`,
 * `.`; no `..`), or returns null for anything else (a path, a URL).
 */
export function parseHubId(spec: string): HubId | null {
  const m = /^([A-Za-z0-9][\w.-]*(?:\/[A-Za-z0-9][\w.-]*)?)(?:@([\w.-]+))?$/.exec(spec);
  if (!m || spec.includes("..")) return null;
  return { repo: m[1], revision: m[2] ?? "main" };
}

/** Options of {@link resolveBertModel}. */
export interface HubOptions {
  /** The hub's base URL; default `HF_ENDPOINT` or https://huggingface.co. */
  endpoint?: string;
  /** Called as bytes arrive: (file, bytes so far, total bytes or null). */
  onProgress?: (file: string, done: number, total: number | null) => void;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch {
    return false;
  }
}

function endpointOf(o: HubOptions): string {
  let env: string | undefined;
  try {
    env = Deno.env.get("HF_ENDPOINT");
  } catch {
    env = undefined; // no --allow-env: the default hub
  }
  return (o.endpoint ?? env ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, "");
}

/**
 * The folder of the BERT model `spec`: a local folder as it is; a hub id from the cache, after
 * downloading it there once (`cacheDir/hub/<id>/<revision>/`). Anything else, or a failed
 * download, is a DataError naming the id, the URL and what went wrong.
 */
export async function resolveBertModel(
  spec: string,
  cacheDir: string,
  o: HubOptions = {},
): Promise<string> {
  if (await isDir(spec)) return spec;
  const id = parseHubId(spec);
  if (!id) {
    throw new DataError(
      spec,
      "is neither a model folder nor a hub model id (owner/name, optionally @revision)",
    );
  }
  const dir = join(cacheDir, "hub", ...id.repo.split("/"), id.revision);
  try {
    await Deno.stat(join(dir, COMPLETE));
    return dir; // downloaded before: no network
  } catch {
    // not (completely) downloaded yet
  }
  const base = `${endpointOf(o)}/${id.repo}/resolve/${encodeURIComponent(id.revision)}`;
  await Deno.mkdir(join(dir, "onnx"), { recursive: true });
  const got: string[] = [];
  for (const file of [...REQUIRED, ...OPTIONAL]) {
    if (await download(`${base}/${file}`, join(dir, file), file, REQUIRED.includes(file), o)) {
      got.push(file);
    }
  }
  if (!got.includes("tokenizer.json") && !got.includes("vocab.txt")) {
    throw new DataError(spec, `the hub model at ${base} has neither tokenizer.json nor vocab.txt`);
  }
  const record = { id: id.repo, revision: id.revision, url: base, files: got };
  const tmp = join(dir, `${COMPLETE}.tmp-${unique()}`);
  await Deno.writeTextFile(tmp, JSON.stringify(record, null, 2) + "\n");
  await Deno.rename(tmp, join(dir, COMPLETE));
  return dir;
}

/**
 * A temporary-name suffix of this process: two processes downloading the same model (sweep points,
 * Slurm tasks on nodes that share the cache) never write the same temporary file.
 */
const unique = () => `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;

/**
 * Streams `url` into `dest` through a temporary file renamed at the end. Returns false for a 404
 * of an optional file; throws a DataError for everything else that is not a whole file.
 */
async function download(
  url: string,
  dest: string,
  file: string,
  required: boolean,
  o: HubOptions,
): Promise<boolean> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: "follow" });
  } catch (e) {
    throw new DataError(url, `download failed: ${(e as Error).message}`);
  }
  if (res.status === 404 && !required) {
    await res.body?.cancel();
    return false;
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new DataError(url, `download failed: HTTP ${res.status} ${res.statusText}`.trim());
  }
  const header = res.headers.get("content-length");
  const total = header !== null && /^\d+$/.test(header) ? Number(header) : null;
  if (total !== null && total > MAX_HUB_FILE_BYTES) {
    await res.body.cancel();
    throw new DataError(url, `is ${total} bytes, over the limit of ${MAX_HUB_FILE_BYTES}`);
  }
  const tmp = `${dest}.part-${unique()}`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  let done = 0;
  try {
    for await (const chunk of res.body) {
      done += chunk.length;
      if (done > MAX_HUB_FILE_BYTES) {
        throw new DataError(url, `sent more than the limit of ${MAX_HUB_FILE_BYTES} bytes`);
      }
      let off = 0;
      while (off < chunk.length) off += await f.write(chunk.subarray(off));
      o.onProgress?.(file, done, total);
    }
  } catch (e) {
    f.close();
    await Deno.remove(tmp).catch(() => {});
    if (e instanceof DataError) throw e;
    throw new DataError(url, `download failed after ${done} bytes: ${(e as Error).message}`);
  }
  f.close();
  if (total !== null && done !== total) {
    await Deno.remove(tmp).catch(() => {});
    throw new DataError(url, `download cut short: ${done} of ${total} bytes`);
  }
  await Deno.rename(tmp, dest);
  return true;
}
