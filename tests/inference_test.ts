/**
 * The model API of issue 16 item 3: an eval-only `Inference` (no training step compiled) that
 * holds the whole state_dict, starts from a Session's seeded values, returns logits and
 * probabilities, and loads/saves weights strictly or partially with a report; and `fit` as a
 * thin wrapper over the runner's loop (`train`).
 */
import { join } from "node:path";
import { buildModel } from "../lib/models/registry.ts";
import { stateDict } from "../lib/models/state_dict.ts";
import { type Backend, selectBackend } from "../lib/backends/select.ts";
import { Session } from "../lib/train/session.ts";
import { Inference } from "../lib/train/inference.ts";
import { loadWeights, saveWeights } from "../lib/train/weights.ts";
import { CheckpointError, saveCheckpoint } from "../lib/io/checkpoint.ts";
import { TEXT_INPUT } from "../lib/models/lvit.ts";
import { fillNormal, Stream } from "../lib/rng/philox.ts";
import { assert, assertEquals } from "./assert.ts";
import { noGpu } from "./harness.ts";
import { withTmp } from "./process.ts";

const SIZE = 64, B = 2, TOKENS = 4;
const tinyLvit = () =>
  buildModel("lvit-t", { baseChannels: 8, imageSize: SIZE, textTokens: TOKENS });

function inputs(seed: number) {
  const x = new Float32Array(B * 3 * SIZE * SIZE);
  fillNormal(x, seed, Stream.data, 1);
  const t = new Float32Array(B * TOKENS * 768);
  fillNormal(t, seed + 1, Stream.data, 1);
  return { x, extra: { [TEXT_INPUT]: t } };
}

const dims = { batch: B, channels: 3, height: SIZE, width: SIZE };

for (const name of ["cpu", "webgpu"] as const) {
  Deno.test({
    name: `Inference [${name}]: the state_dict, a Session's seeded values, logits and sigmoid`,
    ignore: name === "webgpu" && noGpu,
    async fn() {
      const be: Backend = await selectBackend(name, true);
      const model = tinyLvit();
      const [m, s] = [
        await Inference.create(be, model, { size: SIZE, batch: B, seed: 3 }),
        await Session.create(be, model, { ...dims, seed: 3 }),
      ];
      try {
        // Every state_dict entry, in stateDict's order; a training session's model state.
        assertEquals(
          [...m.leafShapes().keys()],
          stateDict(model, { size: SIZE }).map((e) => e.name),
        );
        assertEquals([...m.leafShapes().keys()], [...s.leafShapes(true).keys()]);
        const [a, b] = [await m.state(), await s.state(true)];
        for (const [k, v] of b) assert(String(a.get(k)!.data) === String(v.data), k);
        // The same forward as the session's eval program; probabilities = sigmoid(logits).
        const { x, extra } = inputs(5);
        const f = await m.forward(x, extra);
        const g = await s.forward(x, extra);
        assertEquals(f.probabilities, g.probabilities);
        assertEquals(f.logits, g.logits);
        assertEquals(f.probabilities, await s.predict(x, extra));
        assertEquals(f.probabilities.length, B * SIZE * SIZE);
        let worst = 0;
        for (let i = 0; i < f.logits!.length; i++) {
          worst = Math.max(worst, Math.abs(1 / (1 + Math.exp(-f.logits![i])) - f.probabilities[i]));
        }
        assert(worst < 1e-6, `probabilities differ from sigmoid(logits) by ${worst}`);
      } finally {
        m.destroy();
        s.destroy();
      }
    },
  });
}

Deno.test("loadWeights/saveWeights: strict round trip, strict refusal, partial report", async () => {
  await withTmp("lvit-weights-", async (dir) => {
    const be = await selectBackend("cpu", true);
    const model = tinyLvit();
    const src = await Inference.create(be, model, { size: SIZE, batch: B, seed: 1 });
    const dst = await Inference.create(be, model, { size: SIZE, batch: B, seed: 2 });
    try {
      const file = join(dir, "w.safetensors");
      await saveWeights(src, file, { note: "test" });
      const { x, extra } = inputs(7);
      const before = await dst.forward(x, extra);
      const r = await loadWeights(dst, file);
      assertEquals(r.loaded.length, stateDict(model, { size: SIZE }).length);
      assertEquals([r.missing, r.unexpected, r.misshapen], [[], [], []]);
      assertEquals(r.metadata.get("note"), "test");
      const after = await dst.forward(x, extra);
      assertEquals(after.probabilities, (await src.forward(x, extra)).probabilities);
      assert(
        after.probabilities.some((v, i) => v !== before.probabilities[i]),
        "loading changed nothing",
      );

      // A file with one tensor missing, one extra and one of another shape.
      const state = await src.state();
      const [gone, bent] = [...state.keys()].filter((k) => !k.endsWith("num_batches_tracked"));
      state.delete(gone);
      state.set(bent, { shape: [1, 2, 3], data: new Float32Array(6) });
      state.set("extra.weight", { shape: [2], data: new Float32Array(2) });
      state.set("optim.m.x", { shape: [1], data: new Float32Array(1) });
      const odd = join(dir, "odd.safetensors");
      await saveCheckpoint(odd, state);
      let err: unknown = null;
      await loadWeights(dst, odd).catch((e) => err = e);
      assert(err instanceof CheckpointError, String(err));
      const msg = (err as Error).message;
      for (const s of [gone, bent, "extra.weight"]) assert(msg.includes(s), `${s}: ${msg}`);
      assert(!msg.includes("optim.m.x"), "trainer state is not model state");

      const p = await loadWeights(dst, odd, { mode: "partial" });
      assertEquals(p.missing, [gone]);
      assertEquals(p.unexpected, ["extra.weight"]);
      assertEquals(p.misshapen.map((m) => m.name), [bent]);
      assertEquals(p.ignored, ["optim.m.x"]);
      assertEquals(p.loaded.length, stateDict(model, { size: SIZE }).length - 2);
    } finally {
      src.destroy();
      dst.destroy();
    }
  });
});
