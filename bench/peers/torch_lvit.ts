/**
 * Peer benchmark: runs `torch_lvit.py` (the reference LViT-T training step in PyTorch on the
 * CPU, 224x224 images, text [B, 10, 768]) under Debian's `/usr/bin/python3` and parses its
 * one-line JSON report. The result is only accepted when the peer built the same network as
 * ours: 29,908,033 trained and 39,933,345 registered parameters (lvit-reference.md 1.7).
 *
 * CLI: `deno run -A bench/peers/torch_lvit.ts --batch 2 --warmup 1 --runs 5`
 *
 * @module
 */

import type { PeerResult } from "./types.ts";

export type { PeerResult };

/** Options for {@link benchTorchLvit}. The image size is the reference's 224. */
export interface TorchLvitOptions {
  /** Batch size B. */
  batch: number;
  /** Untimed steps run first. */
  warmup: number;
  /** Timed steps; each one is timed on its own. */
  runs: number;
}

/**
 * Parameters that receive gradients in the reference LViT-T (those the forward uses); equals
 * `params_used` of `deno task inspect experiments/monuseg.yaml --json`.
 */
export const LVIT_PARAMS_TRAINED = 29_908_033;
/**
 * All of the reference's `model.parameters()`, unused modules included; equals
 * `params_registered` of `deno task inspect experiments/monuseg.yaml --json`.
 */
export const LVIT_PARAMS_REGISTERED = 39_933_345;

/**
 * Debian's python3-torch installs for the system interpreter only; a `python3` found on PATH
 * (e.g. pyenv) would not see it.
 */
const PYTHON = "/usr/bin/python3";
const INSTALL_HINT = "apt-get install python3-torch libopenblas0-pthread";
const SCRIPT = new URL("./torch_lvit.py", import.meta.url);

/** Extra facts the script reports beyond the timings. */
export interface TorchLvitInfo {
  /** `torch.__version__`. */
  torch?: string;
  /** Parameters that held a gradient after the last step. */
  params_trained?: number;
  /** All registered parameters. */
  params_registered?: number;
}

/**
 * Times the reference LViT-T training step in PyTorch (2 intra-op threads).
 *
 * Never throws for environment problems: a missing interpreter, missing torch, a failing script
 * or a network whose parameter counts differ from ours yields `{ ok: false, reason }`.
 */
export async function benchTorchLvit(opts: TorchLvitOptions): Promise<PeerResult> {
  return (await runTorchLvit(opts)).result;
}

/** Like {@link benchTorchLvit}, also returning the torch version and parameter counts. */
export async function runTorchLvit(
  opts: TorchLvitOptions,
): Promise<{ result: PeerResult; info: TorchLvitInfo }> {
  const fail = (reason: string, info: TorchLvitInfo = {}) => ({
    result: { ok: false as const, reason },
    info,
  });
  if (SCRIPT.protocol !== "file:") {
    return fail(`torch_lvit.py must be a local file, got ${SCRIPT.href}`);
  }
  const cmd = new Deno.Command(PYTHON, {
    args: [
      decodeURIComponent(SCRIPT.pathname),
      "--size",
      "224",
      "--batch",
      String(opts.batch),
      "--warmup",
      String(opts.warmup),
      "--runs",
      String(opts.runs),
    ],
    // Torch already runs its own 2 threads; letting OpenBLAS spawn a pool per core on top of
    // that oversubscribes the CPU and makes step times swing wildly.
    env: { OPENBLAS_NUM_THREADS: "1" },
    stdout: "piped",
    stderr: "piped",
  });

  let out: Deno.CommandOutput;
  try {
    out = await cmd.output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return fail(`${PYTHON} not found; python3-torch not installed: ${INSTALL_HINT}`);
    }
    return fail(`could not start ${PYTHON}: ${e instanceof Error ? e.message : String(e)}`);
  }

  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  const lastLine = stdout.split("\n").at(-1) ?? "";
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = JSON.parse(lastLine);
  } catch {
    parsed = undefined;
  }

  if (parsed && typeof parsed.error === "string") {
    return fail(`python3-torch not installed (${parsed.error}): ${INSTALL_HINT}`);
  }
  if (!out.success || !parsed) {
    const detail = (stderr || stdout).split("\n").slice(-3).join(" | ");
    return fail(`torch_lvit.py failed (exit ${out.code}): ${detail}`);
  }

  const { median_ms, min_ms, max_ms, runs } = parsed;
  if (
    typeof median_ms !== "number" || typeof min_ms !== "number" ||
    typeof max_ms !== "number" || typeof runs !== "number"
  ) {
    return fail(`torch_lvit.py printed unexpected output: ${lastLine}`);
  }
  const info: TorchLvitInfo = {
    torch: typeof parsed.torch === "string" ? parsed.torch : undefined,
    params_trained: typeof parsed.params_trained === "number" ? parsed.params_trained : undefined,
    params_registered: typeof parsed.params_registered === "number"
      ? parsed.params_registered
      : undefined,
  };
  // A timing is only comparable with ours if the peer trains the same network: a silent
  // architecture drift would otherwise show up as a speed difference.
  if (
    info.params_trained !== LVIT_PARAMS_TRAINED ||
    info.params_registered !== LVIT_PARAMS_REGISTERED
  ) {
    return fail(
      `torch_lvit.py built a different network: ${info.params_trained} trained / ` +
        `${info.params_registered} registered parameters, expected ${LVIT_PARAMS_TRAINED} / ` +
        `${LVIT_PARAMS_REGISTERED}`,
      info,
    );
  }
  return { result: { ok: true, median_ms, min_ms, max_ms, runs }, info };
}

if (import.meta.main) {
  const args = Deno.args;
  const flag = (name: string, fallback: string): number => {
    const i = args.indexOf(`--${name}`);
    return Number(i >= 0 && i + 1 < args.length ? args[i + 1] : fallback);
  };
  const { result, info } = await runTorchLvit({
    batch: flag("batch", "2"),
    warmup: flag("warmup", "2"),
    runs: flag("runs", "5"),
  });
  console.log(JSON.stringify({ ...result, ...info }));
}
