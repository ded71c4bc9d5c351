/**
 * `stateDict(model)` (lib/models/state_dict.ts) lists a model's whole state_dict without compiling
 * anything: the reference LViT-T's 541 entries and 39,933,345 registered parameters
 * (lvit-reference.md 1.7), exactly the model state a training session holds, in the same order.
 */
import { stateDict } from "../lib/models/state_dict.ts";
import { buildModel } from "../lib/models/registry.ts";
import { selectBackend } from "../lib/backends/select.ts";
import { Session } from "../lib/train/session.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("stateDict: the reference LViT-T has 541 entries and 39,933,345 registered parameters", () => {
  const sd = stateDict(buildModel("lvit-t"));
  assertEquals(sd.length, 541);
  const params = sd.filter((e) => e.trainable).reduce(
    (n, e) => n + e.shape.reduce((a, b) => a * b, 1),
    0,
  );
  assertEquals(params, 39_933_345);
  const counters = sd.filter((e) => e.name.endsWith("num_batches_tracked"));
  assert(
    counters.length > 0 && counters.every((e) => e.dtype === "int64" && e.shape.length === 0),
    "counters are int64 scalars",
  );
  assertEquals(sd[0], {
    name: "inc.conv.weight",
    shape: [64, 3, 3, 3],
    dtype: "float32",
    trainable: true,
  });
});

Deno.test("stateDict: equals a compiled training session's model state (names, order, shapes)", async () => {
  const model = buildModel("lvit-t", { baseChannels: 8, imageSize: 64, textTokens: 4 });
  const s = await Session.create(await selectBackend("cpu", true), model, {
    batch: 2,
    channels: 3,
    height: 64,
    width: 64,
    seed: 1,
  });
  try {
    // The session holds num_batches_tracked as [1]; PyTorch (and stateDict) as a scalar.
    const want = [...s.leafShapes(true)].map((
      [name, shape],
    ) => [name, name.endsWith("num_batches_tracked") ? [] : [...shape]]);
    const got = stateDict(model, { size: 64 }).map((e) => [e.name, e.shape]);
    assertEquals(got, want);
  } finally {
    s.destroy();
  }
});
