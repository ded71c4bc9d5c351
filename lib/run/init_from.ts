/**
 * `model.init_from`: the reference's LViT_pretrain (lvit-reference.md 2). At the start of a fresh
 * run, every tensor of a checkpoint whose name and shape the new model's state_dict has
 * (parameters and buffers such as batch-norm running statistics; never the trainer state
 * `optim.*` / `metrics.*` a last.safetensors carries) replaces its seeded initialisation; the
 * rest keeps it. What was copied and what was not goes to `init_from.json` in the run folder,
 * with the checkpoint's sha256, and one summary line to the log.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { InputError } from "../config/errors.ts";
import { isNotFound } from "../config/load.ts";
import {
  CheckpointError,
  firstNonFinite,
  matchShared,
  nonFiniteError,
  readCheckpointFile,
} from "../io/checkpoint.ts";
import { isModelState, type Session } from "../train/session.ts";
import { fileExists, writeAtomic } from "./folder.ts";

/** The run-folder file that records an initialisation. */
export const INIT_FROM_FILE = "init_from.json";

/** A checkpoint read for initialisation. */
export interface InitSource {
  /** The path as resolved from the config (a file or a run folder). */
  path: string;
  /** The safetensors file read. */
  file: string;
  /** The file's contents. */
  bytes: Uint8Array;
  /** Hex sha256 of `bytes`. */
  sha256: string;
}

/** init_from.json: what an initialisation copied and what it left, by state_dict name. */
export interface InitReport {
  /** The path as resolved from the config, and the file read. */
  path: string;
  /** The checkpoint file read. */
  checkpoint: string;
  /** Hex sha256 of that file. */
  sha256: string;
  /** model.init_prefix: prepended to the checkpoint's names before matching (null: none). */
  prefix: string | null;
  /** The checkpoint's safetensors metadata (a run's best.safetensors: epoch, val_dice, ...). */
  checkpoint_metadata: Record<string, string>;
  /** Tensors of the model's state_dict, and tensors in the checkpoint. */
  model_tensors: number;
  /** Tensors in the checkpoint. */
  checkpoint_tensors: number;
  /** Model names set from the checkpoint (same name, with the prefix, and same shape). */
  transferred: string[];
  /** Checkpoint tensors whose name the model does not have. */
  not_in_model: string[];
  /** Names both have, with different shapes (left at their initialisation). */
  shape_mismatch: { name: string; checkpoint: number[]; model: number[] }[];
  /** Model tensors left at their seeded initialisation. */
  left_initialised: string[];
  /** Checkpoint entries never considered: trainer state (optim.*, metrics.*), thop counters. */
  ignored: string[];
}

/**
 * Reads the checkpoint `path` names: a .safetensors file, an official PyTorch .pth (converted
 * when matched, lib/io/pth.ts; `sha256` is the .pth's), or a run folder whose
 * checkpoints/best.safetensors (else checkpoints/last.safetensors) is taken. A missing or
 * unreadable path is an InputError naming it.
 */
export async function readInitSource(path: string): Promise<InitSource> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    throw new InputError(
      `model.init_from: ${path}: ` +
        (isNotFound(e)
          ? "no such file or folder (a .safetensors or PyTorch .pth checkpoint, or a run " +
            "folder; a relative init_from is taken from the folder of the experiment file that " +
            "sets it, a --set one from the working directory)"
          : `cannot read it (${(e as Error).message})`),
    );
  }
  let file = path;
  if (info.isDirectory) {
    const best = join(path, "checkpoints", "best.safetensors");
    const last = join(path, "checkpoints", "last.safetensors");
    if (await fileExists(best)) file = best;
    else if (await fileExists(last)) file = last;
    else {
      throw new InputError(
        `model.init_from: ${path}: a folder without checkpoints/best.safetensors or ` +
          `checkpoints/last.safetensors (not a run folder, or its run has not saved one yet)`,
      );
    }
  }
  let bytes: Uint8Array;
  try {
    bytes = await readCheckpointFile(file);
  } catch (e) {
    // Bounded in size, regular files only (a FIFO or /dev/zero is refused before opening).
    const why = e instanceof CheckpointError ? e.message : `${file}: ${(e as Error).message}`;
    throw new InputError(`model.init_from: ${why}`);
  }
  return { path, file, bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
}

/**
 * Matches a checkpoint against the model's state_dict (`expected`: name -> shape): the values
 * to load and the report. `prefix` (model.init_prefix) is prepended to the checkpoint's names
 * first. A checkpoint that shares no tensor with the model, single numbers aside (batch-norm
 * step counters, a 1-channel output bias), is an InputError: almost certainly the wrong file
 * (a U-Net of another width) or the wrong prefix.
 */
export function matchInit(
  src: InitSource,
  expected: Map<string, readonly number[]>,
  prefix: string | null = null,
): { values: Map<string, Float32Array>; report: InitReport } {
  const m = matchShared(src.file, src.bytes, expected, {
    skip: (n) => !isModelState(n),
    prefix: prefix ?? "",
  });
  const transferred = [...m.values.keys()];
  if (![...m.values.values()].some((v) => v.length > 1)) {
    const sample = (xs: string[]) =>
      xs.length ? `${xs.slice(0, 5).join(", ")}${xs.length > 5 ? ", ..." : ""}` : "none";
    const mis = m.misshapen.map((x) =>
      `${x.name} [${x.file.join(", ")}] vs [${x.model.join(", ")}]`
    );
    throw new InputError(
      `model.init_from: ${src.file}: shares no tensor with the model (no name` +
        `${prefix ? ` prefixed with '${prefix}' (model.init_prefix)` : ""} with the same ` +
        `shape, single numbers aside): a checkpoint of another model? Not in the model: ` +
        `${sample(m.unexpected)}; same name, other shape: ${sample(mis)}`,
    );
  }
  const bad = firstNonFinite(m.values);
  if (bad) throw nonFiniteError(`model.init_from: ${src.file}`, bad);
  const report: InitReport = {
    path: src.path,
    checkpoint: src.file,
    sha256: src.sha256,
    prefix,
    checkpoint_metadata: Object.fromEntries(m.metadata),
    model_tensors: expected.size,
    checkpoint_tensors: transferred.length + m.unexpected.length + m.misshapen.length +
      m.ignored.length,
    transferred,
    not_in_model: m.unexpected,
    shape_mismatch: m.misshapen.map((x) => ({ name: x.name, checkpoint: x.file, model: x.model })),
    left_initialised: m.missing,
    ignored: m.ignored,
  };
  return { values: m.values, report };
}

/** The log line of an initialisation. */
export function initSummaryLine(r: InitReport): string {
  const epoch = r.checkpoint_metadata.epoch;
  const unused = r.not_in_model.length + r.shape_mismatch.length;
  const as = r.prefix ? ` as ${r.prefix}*` : "";
  return `init: ${r.transferred.length} of ${r.model_tensors} tensors from ${r.checkpoint}${as} (` +
    `${epoch !== undefined ? `epoch ${epoch}, ` : ""}sha256 ${r.sha256.slice(0, 12)}); ` +
    `${r.left_initialised.length} left initialised; ${unused} checkpoint tensors unused (` +
    `${r.not_in_model.length} not in the model, ${r.shape_mismatch.length} of another shape); ` +
    `details in ${INIT_FROM_FILE}`;
}

/**
 * Initialises a fresh session from `src` (names prefixed with `prefix`, model.init_prefix):
 * loads the matching tensors, writes init_from.json into `dir` and logs the summary line.
 * Returns the report.
 */
export async function initSession(
  s: Session,
  src: InitSource,
  dir: string,
  log: (line: string) => void,
  prefix: string | null = null,
): Promise<InitReport> {
  const { values, report } = matchInit(src, s.leafShapes(true), prefix);
  s.loadState(values);
  await writeAtomic(join(dir, INIT_FROM_FILE), JSON.stringify(report, null, 2) + "\n");
  log(initSummaryLine(report));
  return report;
}
