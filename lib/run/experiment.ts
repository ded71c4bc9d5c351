/** Runs a parsed experiment end to end: data, model, training, validation and test metrics. */
import type { Experiment } from "../config/demo_schema.ts";
import { selectBackend } from "../backends/select.ts";
import { blobSet } from "../data/blobs.ts";
import { unet } from "../models/unet.ts";
import { Session } from "../train/session.ts";
import { type EpochReport, fit, type Split } from "../train/fit.ts";
import { meanScores, testScores } from "../eval/metrics.ts";

export interface RunResult {
  backend: string;
  device: string;
  params: number;
  epochs: EpochReport[];
  test: { dice: number; iou: number };
}

/** Test metrics with the reference's test rules (prob > 0.5, per-image mean). */
async function testMetrics(s: Session, split: Split, batch: number) {
  const per = split.images.length / split.n;
  const perM = split.masks.length / split.n;
  const x = new Float32Array(batch * per);
  const scores = [];
  for (let i = 0; i < split.n; i += batch) {
    for (let k = 0; k < batch; k++) {
      const j = Math.min(i + k, split.n - 1);
      x.set(split.images.subarray(j * per, (j + 1) * per), k * per);
    }
    const p = await s.predict(x);
    for (let k = 0; k < batch && i + k < split.n; k++) {
      scores.push(testScores(p, split.masks.subarray(i * perM), k * perM, perM));
    }
  }
  return meanScores(scores);
}

export async function runExperiment(
  e: Experiment,
  io: { log: (s: string) => void } = { log: () => {} },
): Promise<RunResult> {
  const { size } = e.data;
  const levels = e.model.widths.length - 1;
  if (size % 2 ** levels) {
    throw new Error(`data.size ${size} must be divisible by 2^${levels} for ${levels} poolings`);
  }
  const t0 = performance.now();
  const train = blobSet(e.seed, 0, e.data.train, size);
  const val = blobSet(e.seed, 1_000_000, e.data.val, size);
  const test = blobSet(e.seed, 2_000_000, e.data.test, size);
  io.log(
    `data: generated blobs ${size}x${size}, ${e.data.train}/${e.data.val}/${e.data.test} images`,
  );
  const backend = await selectBackend(e.backend);
  const s = await Session.create(backend, (c, x) => unet(c, x, { widths: e.model.widths }), {
    batch: e.train.batch,
    channels: 3,
    height: size,
    width: size,
    seed: e.seed,
  });
  const prog = s.train.program;
  io.log(
    `model (${backend.name}): unet ${e.model.widths.join("-")}, ${
      s.paramCount.toLocaleString("en-US")
    } params; ` +
      `train step ${
        prog.target === "cpu" ? `${prog.cpuSteps.length} nodes` : `${prog.steps.length} dispatches`
      }, ${(prog.tempBytes / 2 ** 20).toFixed(1)} MiB ` +
      `temporaries + ${(prog.leafBytes / 2 ** 20).toFixed(1)} MiB params/state ` +
      `(setup ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  const epochs = await fit(s, train, val, e.train.batch, {
    epochs: e.train.epochs,
    lr: e.train.lr,
    seed: e.seed,
    onEpoch: (r) =>
      io.log(
        `epoch ${r.epoch}/${e.train.epochs}  loss ${r.loss.toFixed(4)}  val dice ${
          r.valDice.toFixed(4)
        }  iou ${r.valIou.toFixed(4)}  ${r.stepsPerSecond.toFixed(2)} it/s  ${
          r.seconds.toFixed(1)
        } s`,
      ),
  });
  const t = await testMetrics(s, test, e.train.batch);
  io.log(
    `test: dice ${t.dice.toFixed(4)}  iou ${
      t.iou.toFixed(4)
    } (${e.data.test} images, last epoch's weights)`,
  );
  s.destroy();
  return { backend: backend.name, device: backend.device, params: s.paramCount, epochs, test: t };
}
