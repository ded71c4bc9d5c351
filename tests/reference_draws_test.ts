/**
 * `data.augment_draws: reference-loader`: the MT19937 draws of Python's `random` and numpy's
 * legacy generator (lib/rng/mt19937.ts), the reference loader's per-position transforms
 * (lib/data/reference_draws.ts) against those the official code gives, and their use by the
 * trainer and the config.
 */
import { Mt19937 } from "../lib/rng/mt19937.ts";
import { referenceLoaderOps } from "../lib/data/reference_draws.ts";
import { drawAugment } from "../lib/data/augment.ts";
import { epochDraw } from "../lib/train/trainer.ts";
import { resolveExperimentText } from "../lib/config/load.ts";
import { InputError } from "../lib/config/errors.ts";
import { assert, assertEquals, expectError } from "./assert.ts";

Deno.test("MT19937: the reference outputs, Python's random and numpy's legacy randint", () => {
  // Matsumoto and Nishimura's init_genrand(5489): the first word is 3499211612.
  assertEquals(Mt19937.fromInt(5489).nextU32(), 3499211612);
  // Printed by CPython 3.11: r = random.Random(666); r.getrandbits(32) twice, r.random().
  const p = Mt19937.python(666);
  assertEquals([p.nextU32(), p.nextU32(), p.random()], [
    1959018967,
    4216997439,
    0.9033231539802643,
  ]);
  // A seed above 2^32 is keyed by two words: random.Random(2**40 + 5).
  const q = Mt19937.python(2 ** 40 + 5);
  assertEquals([q.nextU32(), q.random()], [2166296868, 0.516921470080349]);
  // numpy 1.24: np.random.seed(666); randint(0, 4), randint(0, 2), randint(-20, 20), then a raw
  // word (randint(0, 2**32, dtype=uint64)) and randint(0, 1000000).
  const n = Mt19937.fromInt(666);
  assertEquals(
    [n.randint(0, 4), n.randint(0, 2), n.randint(-20, 20), n.nextU32(), n.randint(0, 1000000)],
    [0, 0, 10, 2905606974, 303174],
  );
  expectError("negative seed", RangeError, () => Mt19937.python(-1), "python seed -1");
  expectError("wide seed", RangeError, () => Mt19937.fromInt(2 ** 32), "numpy seed 4294967296");
  expectError("empty range", RangeError, () => n.randint(3, 3), "randint(3, 3)");
});

/** [kind, k | angle, axis] rows: 0 none, 1 rot90/flip, 2 rotate. */
const rows = (n: number, batch: number, seed: number) =>
  referenceLoaderOps(n, batch, seed).map((o) =>
    o.kind === "none" ? [0, 0, 0] : o.kind === "rotflip" ? [1, o.k, o.axis] : [2, o.angle, 0]
  );

Deno.test("reference loader: MoNuSeg's 24 positions are the official loader's (torch 1.8)", () => {
  // bench/parity/pipeline_official.py ran the official RandomGenerator and worker_init_fn with
  // the worker states of torch 1.8 (8 workers, numpy not re-seeded) and printed these.
  const official = [
    [2, -18, 0],
    [2, 10, 0],
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
    [2, -18, 0],
    [2, -18, 0],
    [1, 1, 0],
    [1, 0, 0],
    [1, 1, 0],
    [1, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
    [2, -18, 0],
    [1, 0, 0],
    [0, 0, 0],
    [1, 2, 0],
    [1, 1, 0],
    [0, 0, 0],
    [0, 0, 0],
    [1, 1, 0],
    [1, 2, 0],
    [0, 0, 0],
    [1, 2, 0],
  ];
  assertEquals(rows(24, 2, 666), official);
  const count = (k: number) => official.filter((r) => r[0] === k).length;
  assertEquals([count(0), count(2), count(1)], [9, 5, 10]);
  // Workers 0-3 run batches 8-11 after batches 0-3: those continue the workers' streams, so an
  // epoch of 8 batches (one per worker) is the first 16 positions, and a worker's second batch
  // differs from what a fresh stream would give it.
  assertEquals(rows(16, 2, 666), official.slice(0, 16));
  assert(JSON.stringify(official.slice(16, 18)) !== JSON.stringify(official.slice(0, 2)));
  // A partial last batch is kept, as the reference's loader keeps it: position 24 is the first
  // sample of batch 12, worker 4's second batch.
  const odd = referenceLoaderOps(25, 2, 666);
  assert(odd.every((o) => o !== undefined), "every position drawn");
  assertEquals(rows(25, 2, 666).slice(0, 24), official);
  assert(JSON.stringify(rows(24, 2, 667)) !== JSON.stringify(official), "the seed matters");
  expectError("no samples", RangeError, () => referenceLoaderOps(0, 2, 666), "samples 0");
});

Deno.test("trainer: reference-loader draws by position only; philox by epoch and image", () => {
  const table = referenceLoaderOps(24, 2, 666);
  for (const e of [1, 2, 37]) {
    for (let b = 0; b < 12; b++) {
      const draw = epochDraw(666, e, b, 2, table);
      for (let k = 0; k < 2; k++) {
        // Any image in that slot gets the slot's transform, in every epoch.
        assertEquals(draw(k, 5), table[2 * b + k]);
        assertEquals(draw(k, 17), table[2 * b + k]);
      }
    }
  }
  const philox = epochDraw(666, 3, 4, 2);
  assertEquals(philox(0, 9), drawAugment(666, 3, 9));
  assertEquals(philox(1, 9), drawAugment(666, 3, 9));
});

Deno.test("config: data.augment_draws parses, is checked, and philox keeps the hash", () => {
  const base = "name: t\ndata: {dataset: synth}\nmodel: {name: unet, base_channels: 8}\n";
  const load = (sets: string[] = []) =>
    resolveExperimentText("e.yaml", base, sets, () => {
      throw new Error("no extends here");
    });
  const plain = load();
  const ref = load(["data.augment_draws=reference-loader"]);
  assertEquals(ref.config.data.augment_draws, "reference-loader");
  assert(ref.hash !== plain.hash, "reference-loader is another experiment");
  assertEquals(load(["data.augment_draws=philox"]).hash, plain.hash);
  for (
    const [set, why] of [
      ["data.augment=false", "data.augment is false"],
      ["train.labeled_fraction=0.5", "labeled_fraction < 1"],
      ["seed=4294967290", "exceeds numpy's 32-bit seeds"],
    ]
  ) {
    expectError(
      set,
      InputError,
      () => load(["data.augment_draws=reference-loader", set]),
      "data.augment_draws 'reference-loader' cannot be used",
      why,
    );
  }
  expectError(
    "unknown draws",
    InputError,
    () => load(["data.augment_draws=torch"]),
    "data.augment_draws",
    '"philox", "reference-loader"',
  );
});
