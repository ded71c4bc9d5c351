/**
 * A small LViT-T trains through the Session on the CPU backend: text features are fed as an
 * extra input, dropout is keyed by the step counter, the loss falls on a fixed batch, and two
 * sessions with the same seed end bitwise identical.
 */
import { selectBackend } from "../lib/backends/select.ts";
import { Session } from "../lib/train/session.ts";
import { buildModel } from "../lib/models/registry.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";
import { blobSet } from "../lib/data/blobs.ts";
import { encodeBuiltin } from "../lib/data/text_builtin.ts";

const S = 64;

async function train(seed: number, steps: number) {
  const s = await Session.create(
    await selectBackend("cpu", true),
    buildModel("lvit-t", { baseChannels: 8, imageSize: S }),
    { batch: 2, channels: 3, height: S, width: S, seed },
  );
  const d = blobSet(seed, 0, 2, S);
  const text = new Float32Array(2 * 10 * 768);
  text.set(encodeBuiltin("Bilateral pulmonary infection, two infected areas."), 0);
  text.set(encodeBuiltin("Unilateral pulmonary infection, one infected area."), 10 * 768);
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    s.step(d.images, d.masks, 3e-3, { [TEXT_INPUT]: text });
    losses.push(await s.takeLossSum());
  }
  const p = await s.predict(d.images, { [TEXT_INPUT]: text });
  const params = await s.parameters();
  s.destroy();
  return { losses, p, params };
}

Deno.test("LViT-T (base 8, 64x64) trains on cpu with text and dropout, deterministically", async () => {
  const a = await train(2, 6);
  console.log(`LViT-T tiny losses: ${a.losses.map((v) => v.toFixed(4)).join(" ")}`);
  if (!a.losses.every(Number.isFinite)) throw new Error("non-finite loss");
  if (!(a.losses[5] < a.losses[0])) throw new Error("the loss did not fall on a fixed batch");
  if (!a.p.every((v) => v > 0 && v < 1)) throw new Error("probabilities out of (0, 1)");
  const b = await train(2, 6);
  for (const [k, v] of a.params) {
    const w = b.params.get(k)!;
    if (v.some((x, i) => !Object.is(x, w[i]))) throw new Error(`${k} differs between two runs`);
  }
});
