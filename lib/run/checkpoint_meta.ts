/**
 * What a run's checkpoints carry besides the tensors (safetensors string metadata), and the
 * checks a checkpoint passes before a run continues from it or `deno task eval` scores it:
 *
 * - `format`, `config_hash`: the runner's checkpoint and this run's config.
 * - `data_identity`: the data set it was trained on (lib/data/identity.ts); another data set is
 *   refused with both identities (exit 2). Checkpoints written before it existed are not
 *   checked.
 * - `backend`, `adapter` (last.safetensors): where it was written; a resume elsewhere is allowed
 *   and logged (determinism holds per backend and adapter, design.md 4).
 * - `trainer_state` (last.safetensors): the loop state as JSON, validated field by field against
 *   the run's recipe before anything is loaded (exit 2 naming the field and the file).
 */
import { z } from "../deps.ts";
import { InputError } from "../config/errors.ts";
import { type Recipe, type SemiPlan, stepsInEpoch, type TrainerState } from "../train/trainer.ts";

/** The runner's checkpoint format (metadata `format`). */
export const CHECKPOINT_FORMAT = "lvit-deno-run-v1";

/** What ties a checkpoint to its run. */
export interface CheckpointIdentity {
  /** The run's 8-hex config hash. */
  hash: string;
  /** The data set's identity (hex SHA-256, lib/data/identity.ts). */
  data: string;
  /** The backend and adapter of the process writing the checkpoint. */
  backend: string;
  adapter: string;
}

/** The metadata of checkpoints/last.safetensors (JSON numbers round-trip float64 exactly). */
export function lastMeta(st: TrainerState, id: CheckpointIdentity): Record<string, string> {
  const bestDice = Number.isFinite(st.bestDice) ? st.bestDice : null;
  return {
    format: CHECKPOINT_FORMAT,
    config_hash: id.hash,
    data_identity: id.data,
    backend: id.backend,
    adapter: id.adapter,
    trainer_state: JSON.stringify({ ...st, bestDice }),
  };
}

/** The metadata of checkpoints/best.safetensors. */
export function bestMeta(st: TrainerState, id: CheckpointIdentity): Record<string, string> {
  return {
    format: CHECKPOINT_FORMAT,
    config_hash: id.hash,
    data_identity: id.data,
    epoch: String(st.bestEpoch),
    val_dice: String(st.bestDice),
  };
}

/**
 * Refuses (exit 2) a checkpoint, run folder or summary written for another data set than the
 * one at `root` now. `recorded` undefined (written before data identities): not checked.
 */
export function checkDataIdentity(
  what: string,
  recorded: unknown,
  now: string,
  root: string,
  hint = "; or use another --out for a run on this data set",
): void {
  if (recorded === undefined || recorded === null || recorded === now) return;
  throw new InputError(
    `${what}: written for data set ${String(recorded).slice(0, 16)}, but the data set at ` +
      `${root} is ${now.slice(0, 16)} (identities of file names, sizes and texts): another ` +
      `data set is another run. Point data.root or LVIT_DATA back at the data set of this ` +
      `run${hint}`,
  );
}

/** A line for the log when a run resumes on another backend or adapter than it was saved on. */
export function backendChange(
  meta: Map<string, string>,
  backend: string,
  adapter: string,
): string | null {
  const was = meta.get("backend"), wasAdapter = meta.get("adapter");
  if (was === undefined || (was === backend && wasAdapter === adapter)) return null;
  return `resume: the checkpoint was written on ${was} (${wasAdapter ?? "?"}), this process ` +
    `runs on ${backend} (${adapter}): the run continues, but not bitwise as an uninterrupted ` +
    `run on one backend would (determinism holds per backend and adapter)`;
}

const int = (min: number) => z.number().int().min(min);
/** Each field of the trainer state: its schema and what it must be, in words. */
const FIELDS = {
  epoch: [int(1), "an integer >= 1"],
  stepInEpoch: [int(0), "an integer >= 0"],
  steps: [int(0), "an integer >= 0"],
  lossSum: [z.number().min(0), "a finite number >= 0"],
  bestDice: [z.number().min(0).max(1).nullable(), "a number in [0, 1] or null"],
  bestEpoch: [int(1).nullable(), "an integer >= 1 or null"],
  done: [z.boolean(), "true or false"],
  stoppedEarly: [z.boolean(), "true or false"],
} as const;
const StateSchema = z.strictObject(
  Object.fromEntries(Object.entries(FIELDS).map(([k, [s]]) => [k, s])) as {
    [K in keyof typeof FIELDS]: (typeof FIELDS)[K][0];
  },
);

/**
 * The trainer state of a last.safetensors, every field checked (type, range, and consistency
 * with the run's recipe and plan: the epoch within train.epochs, the step within its epoch, the
 * total step count equal to the steps of the epochs before plus those of this one); anything
 * else is an InputError naming the file and the field. Also checks format and config hash.
 */
export function parseTrainerState(
  meta: Map<string, string>,
  file: string,
  hash: string,
  recipe: Recipe,
  plan: SemiPlan,
): TrainerState {
  if (meta.get("format") !== CHECKPOINT_FORMAT || !meta.has("trainer_state")) {
    throw new InputError(`${file}: not a resumable checkpoint of this runner (no trainer state)`);
  }
  if (meta.get("config_hash") !== hash) {
    throw new InputError(
      `${file}: written for config ${meta.get("config_hash")}, this run is ${hash}; ` +
        `a changed config is a new run (use another --out or drop --resume)`,
    );
  }
  const bad = (field: string | null, why: string) =>
    new InputError(
      `${file}: metadata trainer_state${field ? `, field ${field}` : ""}: ${why}; the ` +
        `checkpoint is damaged or was not written by this runner (start over with --force)`,
    );
  let raw: unknown;
  try {
    raw = JSON.parse(meta.get("trainer_state")!);
  } catch (e) {
    throw bad(null, `not JSON (${(e as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw bad(null, `must be a JSON object, got ${JSON.stringify(raw).slice(0, 80)}`);
  }
  const obj = raw as Record<string, unknown>;
  const r = StateSchema.safeParse(obj);
  if (!r.success) {
    const issue = r.error.issues[0];
    if (issue.code === "unrecognized_keys") {
      throw bad(null, `unknown field(s) ${(issue.keys as string[]).join(", ")}`);
    }
    const field = String(issue.path[0]) as keyof typeof FIELDS;
    throw bad(
      field,
      field in obj
        ? `must be ${FIELDS[field][1]}, got ${JSON.stringify(obj[field])}`
        : "is missing",
    );
  }
  const st = r.data;
  const E = recipe.epochs;
  if (st.epoch > E + 1 || (st.epoch > E && !st.done)) {
    throw bad(
      "epoch",
      `${st.epoch} is beyond train.epochs (${E}) of this run${st.done ? "" : " and done is false"}`,
    );
  }
  const inEpoch = st.epoch <= E ? stepsInEpoch(plan, recipe, st.epoch) : 0;
  if (st.stepInEpoch > inEpoch) {
    throw bad("stepInEpoch", `${st.stepInEpoch}, but epoch ${st.epoch} has ${inEpoch} steps`);
  }
  let before = 0;
  for (let e = 1; e < st.epoch; e++) before += stepsInEpoch(plan, recipe, e);
  if (st.steps !== before + st.stepInEpoch) {
    throw bad(
      "steps",
      `${st.steps}, but epochs 1-${st.epoch - 1} and ${st.stepInEpoch} step(s) of epoch ` +
        `${st.epoch} make ${before + st.stepInEpoch}`,
    );
  }
  if (st.stepInEpoch === 0 && st.lossSum !== 0) {
    throw bad("lossSum", `${st.lossSum} at the start of an epoch (must be 0)`);
  }
  if ((st.bestEpoch === null) !== (st.bestDice === null)) {
    throw bad("bestEpoch", `${st.bestEpoch} with bestDice ${st.bestDice} (both or neither)`);
  }
  if (st.bestEpoch !== null && (st.bestEpoch >= st.epoch || st.bestEpoch < recipe.min_save_epoch)) {
    throw bad(
      "bestEpoch",
      `${st.bestEpoch}, outside train.min_save_epoch (${recipe.min_save_epoch}) to the last ` +
        `finished epoch (${st.epoch - 1})`,
    );
  }
  if (st.stoppedEarly && !st.done) throw bad("stoppedEarly", "true while done is false");
  return { ...st, bestDice: st.bestDice ?? -Infinity };
}
