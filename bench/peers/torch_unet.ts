/**
 * Peer benchmark: runs `torch_unet.py` (the unet-small training step in PyTorch on the CPU)
 * under Debian's `/usr/bin/python3` and parses its one-line JSON report.
 *
 * CLI: `deno run -A bench/peers/torch_unet.ts --size 64 --batch 2`
 *
 * @module
 */

import type { PeerResult } from "./types.ts";

export type { PeerResult };

/** Options for {@link benchTorchUnet}. */
export interface TorchUnetOptions {
  /** Spatial size S of the square S x S input; must be divisible by 8. */
  size: number;
  /** Batch size B. */
  batch: number;
  /** Untimed steps run first. */
  warmup: number;
  /** Timed steps; each one is timed on its own. */
  runs: number;
}

/**
 * Debian's python3-torch installs for the system interpreter only; a `python3` found on PATH
 * (e.g. pyenv) would not see it.
 */
const PYTHON = "/usr/bin/python3";
const INSTALL_HINT = "apt-get install python3-torch libopenblas0-pthread";
const SCRIPT = new URL("./torch_unet.py", import.meta.url);

/** Extra facts the script reports beyond the timings. */
export interface TorchUnetInfo {
  /** `torch.__version__`. */
  torch?: string;
  /** Trainable parameter count, to confirm the peer built the same ~0.48 M network. */
  params?: number;
}

/**
 * Times the unet-small training step in PyTorch (2 intra-op threads).
 *
 * Never throws for environment problems: a missing interpreter, missing torch, or a failing
 * script yields `{ ok: false, reason }`.
 */
export async function benchTorchUnet(opts: TorchUnetOptions): Promise<PeerResult> {
  return (await runTorchUnet(opts)).result;
}

/** Like {@link benchTorchUnet}, also returning the torch version and parameter count. */
export async function runTorchUnet(
  opts: TorchUnetOptions,
): Promise<{ result: PeerResult; info: TorchUnetInfo }> {
  const fail = (reason: string) => ({ result: { ok: false as const, reason }, info: {} });
  if (SCRIPT.protocol !== "file:") {
    return fail(`torch_unet.py must be a local file, got ${SCRIPT.href}`);
  }
  const cmd = new Deno.Command(PYTHON, {
    args: [
      decodeURIComponent(SCRIPT.pathname),
      "--size",
      String(opts.size),
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
    return fail(`torch_unet.py failed (exit ${out.code}): ${detail}`);
  }

  const { median_ms, min_ms, max_ms, runs } = parsed;
  if (
    typeof median_ms !== "number" || typeof min_ms !== "number" ||
    typeof max_ms !== "number" || typeof runs !== "number"
  ) {
    return fail(`torch_unet.py printed unexpected output: ${lastLine}`);
  }
  return {
    result: { ok: true, median_ms, min_ms, max_ms, runs },
    info: {
      torch: typeof parsed.torch === "string" ? parsed.torch : undefined,
      params: typeof parsed.params === "number" ? parsed.params : undefined,
    },
  };
}

if (import.meta.main) {
  const args = Deno.args;
  const flag = (name: string, fallback: string): number => {
    const i = args.indexOf(`--${name}`);
    return Number(i >= 0 && i + 1 < args.length ? args[i + 1] : fallback);
  };
  const { result, info } = await runTorchUnet({
    size: flag("size", "64"),
    batch: flag("batch", "2"),
    warmup: flag("warmup", "3"),
    runs: flag("runs", "10"),
  });
  console.log(JSON.stringify({ ...result, ...info }));
}
