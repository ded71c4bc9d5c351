/**
 * The run folder of design.md 5: `<out>/<experiment>/<variant>/<8-hex config hash>/` with
 * config.yaml, env.json, metrics.jsonl, checkpoints/{last,best}.safetensors, summary.json and
 * report.md. Every file is written atomically (temporary file in the same folder, then a
 * rename), so a crash or kill -9 leaves either the old or the new version, never a torn one.
 */
import { join } from "node:path";
import { writeAtomic } from "../io/atomic.ts";
import { predictionPng } from "../report/images.ts";

export { writeAtomic };

/** Paths inside one run folder. */
export interface RunPaths {
  /** The run folder, `<out>/<name>/<variant>/<hash>`. */
  dir: string;
  /** config.yaml: the resolved configuration. */
  config: string;
  /** env.json: backend, device and software versions. */
  env: string;
  /** metrics.jsonl: one record per epoch. */
  metrics: string;
  /** summary.json: the final scores. */
  summary: string;
  /** report.md: the human-readable report. */
  report: string;
  /** checkpoints/last.safetensors: the latest state, for resuming. */
  last: string;
  /** checkpoints/best.safetensors: the weights of the best validation Dice. */
  best: string;
  /** predictions/: the prediction PNGs of the evaluated split. */
  predictions: string;
}

/** The folder of a run and the files in it. */
export function runPaths(out: string, name: string, variant: string, hash: string): RunPaths {
  const dir = join(out, name, variant, hash);
  return {
    dir,
    config: join(dir, "config.yaml"),
    env: join(dir, "env.json"),
    metrics: join(dir, "metrics.jsonl"),
    summary: join(dir, "summary.json"),
    report: join(dir, "report.md"),
    last: join(dir, "checkpoints", "last.safetensors"),
    best: join(dir, "checkpoints", "best.safetensors"),
    predictions: join(dir, "predictions"),
  };
}

/**
 * Writes the prediction PNG of one sample as `<dir>/<key without extension>.png` (0/255 at
 * prob > 0.5, as the reference saves test predictions).
 */
export async function savePrediction(
  dir: string,
  key: string,
  prob: Float32Array,
  size: number,
): Promise<void> {
  await writeAtomic(join(dir, key.replace(/\.[^.]+$/, "") + ".png"), predictionPng(prob, size));
}

/** Whether a file exists (a missing folder on the way counts as missing). */
export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** The JSON objects of metrics.jsonl (an unreadable or torn last line is dropped). */
export async function readMetrics(path: string): Promise<Record<string, unknown>[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return [];
  }
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // A line cut by a crash mid-append: everything after it is untrusted too.
      break;
    }
  }
  return out;
}

/**
 * Rewrites metrics.jsonl with `records` (on resume: the records up to the checkpoint, so the
 * log matches the state the run continues from).
 */
export async function writeMetrics(path: string, records: unknown[]): Promise<void> {
  await writeAtomic(path, records.map((r) => JSON.stringify(r) + "\n").join(""));
}

/** Appends one record to metrics.jsonl. */
export async function appendMetric(path: string, record: unknown): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(record) + "\n", { append: true });
}

/** The git commit of the working tree the code runs from, or null outside a checkout. */
export async function gitCommit(): Promise<string | null> {
  // Read .git directly: running `git` needs --allow-run and may not be installed.
  try {
    const here = new URL("../../", import.meta.url);
    if (here.protocol !== "file:") return null;
    const gitDir = join(decodeURIComponent(here.pathname), ".git");
    const head = (await Deno.readTextFile(join(gitDir, "HEAD"))).trim();
    if (!head.startsWith("ref: ")) return head;
    const ref = head.slice(5);
    try {
      return (await Deno.readTextFile(join(gitDir, ref))).trim();
    } catch {
      const packed = await Deno.readTextFile(join(gitDir, "packed-refs"));
      const line = packed.split("\n").find((l) => l.endsWith(` ${ref}`));
      return line ? line.split(" ")[0] : null;
    }
  } catch {
    return null;
  }
}
