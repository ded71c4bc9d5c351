/**
 * Peer benchmark: runs `torch_unet.py` (the unet-small training step in PyTorch on the CPU)
 * under Debian's `/usr/bin/python3` and parses its one-line JSON report.
 *
 * CLI: `deno run -A bench/peers/torch_unet.ts --size 64 --batch 2`
 *
 * @module
 */

import type { PeerResult } from "./types.ts";
import { runPythonPeer } from "./python.ts";

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
  const { result, report } = await runPythonPeer(SCRIPT, [
    "--size",
    String(opts.size),
    "--batch",
    String(opts.batch),
    "--warmup",
    String(opts.warmup),
    "--runs",
    String(opts.runs),
  ]);
  if (!result.ok) return { result, info: {} };
  return {
    result,
    info: {
      torch: typeof report.torch === "string" ? report.torch : undefined,
      params: typeof report.params === "number" ? report.params : undefined,
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
