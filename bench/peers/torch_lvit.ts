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
import { PeerEndedError, runPythonPeer, startPythonServer } from "./python.ts";

export type { PeerResult };

/** Options for {@link benchTorchLvit}. The image size is the reference's 224. */
export interface TorchLvitOptions {
  /** Batch size B. */
  batch: number;
  /** Untimed steps run first. */
  warmup: number;
  /** Timed steps; each one is timed on its own. */
  runs: number;
  /**
   * The batch to train on: float32 little-endian images [B,3,224,224], text [B,10,768] and
   * masks [B,1,224,224], in that order (see {@link writeTorchLvitBatch}); random data without.
   */
  data?: string;
}

/**
 * Writes the batch `--data` reads, so that the peer trains on what our timed step trains on:
 * random labels cannot be learned, and a model trained on them drifts (towards the NaN its
 * retries handle) in a way a model trained on the blobs does not.
 */
export async function writeTorchLvitBatch(
  path: string,
  images: Float32Array,
  text: Float32Array,
  masks: Float32Array,
): Promise<void> {
  const out = new Uint8Array(4 * (images.length + text.length + masks.length));
  const view = new DataView(out.buffer);
  let o = 0;
  for (const a of [images, text, masks]) {
    for (const v of a) view.setFloat32((o++) * 4, v, true);
  }
  await Deno.writeFile(path, out);
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

/** A peer timing, with the failed runs a retry replaced (empty: none). */
export type RetriedPeerResult = PeerResult & { retried: string[] };

/**
 * Times the reference LViT-T training step in PyTorch (2 intra-op threads).
 *
 * Debian's torch 1.13 on 2 threads ended 4 of 18 runs here with a NaN in its BCE input ("all
 * elements of input should be between 0 and 1"; the same seeded script passes on a rerun), which
 * would drop a whole comparison: a script that fails is run up to twice more, and `retried`
 * holds each failure's last line. A missing torch or a network of other parameter counts is not
 * retried (it would fail the same way).
 *
 * Never throws for environment problems: a missing interpreter, missing torch, a failing script
 * or a network whose parameter counts differ from ours yields `{ ok: false, reason }`.
 */
export async function benchTorchLvit(opts: TorchLvitOptions): Promise<RetriedPeerResult> {
  const retried: string[] = [];
  let r = (await runTorchLvit(opts)).result;
  for (let i = 0; !r.ok && r.reason.startsWith("torch_lvit.py failed (exit") && i < 2; i++) {
    retried.push(r.reason.split("|").pop()!.trim());
    r = (await runTorchLvit(opts)).result;
  }
  return { ...r, retried };
}

/** The script's arguments for `opts` (the image size is the reference's 224). */
function scriptArgs(batch: number, warmup: number, data?: string): string[] {
  return [
    "--size",
    "224",
    "--batch",
    String(batch),
    "--warmup",
    String(warmup),
    ...(data === undefined ? [] : ["--data", data]),
  ];
}

/**
 * Why a peer report's parameter counts are not ours (null when they are): a timing is only
 * comparable with ours if the peer trains the same network, or a silent architecture drift
 * would show up as a speed difference.
 */
function countsMismatch(report: Record<string, unknown>): string | null {
  if (
    report.params_trained === LVIT_PARAMS_TRAINED &&
    report.params_registered === LVIT_PARAMS_REGISTERED
  ) return null;
  return `torch_lvit.py built a different network: ${report.params_trained} trained / ` +
    `${report.params_registered} registered parameters, expected ${LVIT_PARAMS_TRAINED} / ` +
    `${LVIT_PARAMS_REGISTERED}`;
}

/** Like {@link benchTorchLvit}, also returning the torch version and parameter counts. */
export async function runTorchLvit(
  opts: TorchLvitOptions,
): Promise<{ result: PeerResult; info: TorchLvitInfo }> {
  const { result, report } = await runPythonPeer(SCRIPT, [
    ...scriptArgs(opts.batch, opts.warmup, opts.data),
    "--runs",
    String(opts.runs),
  ]);
  const info: TorchLvitInfo = {
    torch: typeof report.torch === "string" ? report.torch : undefined,
    params_trained: typeof report.params_trained === "number" ? report.params_trained : undefined,
    params_registered: typeof report.params_registered === "number"
      ? report.params_registered
      : undefined,
  };
  if (!result.ok) return { result, info };
  const mismatch = countsMismatch(report);
  if (mismatch) return { result: { ok: false, reason: mismatch }, info };
  return { result, info };
}

/**
 * One step of a {@link TorchLvitServer}: its time, or why it failed; `ended` when the process is
 * gone (no further step can run), else the model was rebuilt and the next step may run.
 */
export type PeerStep =
  | { ok: true; ms: number; loss: number }
  | { ok: false; reason: string; ended: boolean };

/** The reference LViT-T training step in a PyTorch process kept running between steps. */
export interface TorchLvitServer {
  /** Times one training step. */
  step(): Promise<PeerStep>;
  /** Ends the process. */
  close(): Promise<void>;
}

/**
 * Starts `torch_lvit.py --serve` (2 intra-op threads, `warmup` >= 1 untimed steps first) so that
 * the caller can alternate its own steps with the peer's one by one (`deno task bench --paired
 * N`): both sides of each pair then run under the same host load. Refuses a network whose
 * parameter counts differ from ours, as {@link runTorchLvit} does. A start that fails (the
 * warm-up can hit the NaN {@link benchTorchLvit} retries) is tried twice more.
 */
export async function startTorchLvit(
  opts: Omit<TorchLvitOptions, "runs">,
): Promise<{ ok: true; server: TorchLvitServer } | { ok: false; reason: string }> {
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const started = await startPythonServer(SCRIPT, [
      ...scriptArgs(opts.batch, opts.warmup, opts.data),
      "--serve",
    ]);
    if (!started.ok) {
      failures.push(started.reason);
      // Only a script that died (e.g. the NaN) may pass on a second try.
      if (started.reason.startsWith("torch_lvit.py ended")) continue;
      return { ok: false, reason: failures.join("; ") };
    }
    const { server, ready } = started;
    const mismatch = countsMismatch(ready);
    if (mismatch) {
      await server.close();
      return { ok: false, reason: mismatch };
    }
    return {
      ok: true,
      server: {
        async step() {
          try {
            const r = await server.request("step");
            if (typeof r.ms === "number") {
              return { ok: true, ms: r.ms, loss: typeof r.loss === "number" ? r.loss : NaN };
            }
            return { ok: false, reason: String(r.step_error ?? JSON.stringify(r)), ended: false };
          } catch (e) {
            if (e instanceof PeerEndedError) return { ok: false, reason: e.message, ended: true };
            throw e;
          }
        },
        close: () => server.close(),
      },
    };
  }
  return { ok: false, reason: failures.join("; ") };
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
