/**
 * Issue 15, classes 1, 2, 5, 6 and 7, part by part (the command-line reproductions are in
 * failures_test.ts): who may take a run folder (the lock, the record, file systems without
 * locking, other hosts), readers against writers, data set identities, the trainer-state checks,
 * non-finite tensors on load and the file-system errors the CLIs report in one line.
 */
import { join } from "node:path";
import { InputError } from "../lib/config/errors.ts";
import { osErrorExit } from "../lib/cli/common.ts";
import { datasetFingerprint } from "../lib/data/dataset.ts";
import { datasetIdentity, identityOf } from "../lib/data/identity.ts";
import { listLvitDataset } from "../lib/data/lvit_folder.ts";
import { generateSynth } from "../lib/data/synth.ts";
import { CheckpointError, firstNonFinite, matchStateDict } from "../lib/io/checkpoint.ts";
import { encodeSafetensors } from "../lib/io/safetensors.ts";
import {
  backendChange,
  checkDataIdentity,
  type CheckpointIdentity,
  lastMeta,
  parseTrainerState,
} from "../lib/run/checkpoint_meta.ts";
import { matchInit } from "../lib/run/init_from.ts";
import {
  holdForReading,
  judgeFolder,
  lockHeld,
  readRunState,
  RunLockedError,
  type RunStateRecord,
  RunStateWriter,
} from "../lib/run/state.ts";
import {
  epochBatches,
  initialState,
  type Recipe,
  type SemiPlan,
  stepsInEpoch,
  supervisedPlan,
  type TrainerState,
} from "../lib/train/trainer.ts";
import { assert, assertEquals, expectError, expectRejection } from "./assert.ts";
import { withTmp } from "./process.ts";

// ---------------------------------------------------------------------------------------------
// Class 1: who may take a run folder.

const record = (o: Partial<RunStateRecord> = {}): RunStateRecord => ({
  format: "lvit-deno-run-state-v1",
  state: "running",
  pid: 4242,
  host: "node-a",
  started: "2026-01-01T00:00:00.000Z",
  updated: "2026-01-01T00:01:00.000Z",
  ...o,
});

Deno.test("judgeFolder: a held lock refuses, naming the holder; a dead holder is reported; no locking falls back on the record", () => {
  const dir = "/runs/x/default/abcd1234";
  const never = () => {
    throw new Error("pid checked");
  };
  const held = judgeFolder(dir, { kind: "held" }, record(), "node-a", never);
  assertEquals(held.verdict, "refuse");
  assert(held.note!.includes("pid 4242 on host node-a") && held.note!.includes("run.lock"));
  // Held by a process that wrote no record (an eval): said so, with the record's last writer.
  const evalHeld = judgeFolder(dir, { kind: "held" }, record({ state: "finished" }), "node-a");
  assert(evalHeld.verdict === "refuse" && evalHeld.note!.includes("not recorded itself"));
  assert(evalHeld.note!.includes("recorded 'finished'"), evalHeld.note!);

  // Got the lock: a record saying running is a process that died without a word.
  assertEquals(judgeFolder(dir, { kind: "got" }, null, "node-a", never), {
    verdict: "take",
    note: null,
  });
  assertEquals(
    judgeFolder(dir, { kind: "got" }, record({ state: "paused" }), "node-a", never).note,
    null,
  );
  const stale = judgeFolder(dir, { kind: "got" }, record(), "node-a", never);
  assert(stale.verdict === "take", stale.note!);
  assert(stale.note!.includes("previous process pid 4242 on host node-a ended without"));
  assert(!stale.note!.includes("another host"), stale.note!);
  const elsewhere = judgeFolder(dir, { kind: "got" }, record(), "node-b", never);
  assert(elsewhere.note!.includes("(another host; this is node-b)"), elsewhere.note!);

  // No locking on this file system: the record decides.
  const none = { kind: "unsupported" as const, error: "Operation not supported (os error 95)" };
  const free = judgeFolder(dir, none, record({ state: "finished" }), "node-a", never);
  assert(free.verdict === "take" && free.note!.startsWith("warning:"), free.note!);
  assert(free.note!.includes("does not support locking (Operation not supported"), free.note!);
  const alive = judgeFolder(dir, none, record(), "node-a", (pid) => pid === 4242);
  assert(alive.verdict === "refuse" && alive.note!.includes("alive on this host"), alive.note!);
  const dead = judgeFolder(dir, none, record(), "node-a", () => false);
  assert(dead.verdict === "take" && dead.note!.includes("ended without recording why"));
  const remote = judgeFolder(dir, none, record(), "node-b", never);
  assertEquals(remote.verdict, "refuse");
  for (const s of ["pid 4242 on host node-a", "cannot be checked from this host (node-b)"]) {
    assert(remote.note!.includes(s), remote.note!);
  }
  assert(remote.note!.includes(join(dir, "state.json")), remote.note!);
  // Host unknown (no permission to read it): never guessed alive or dead.
  assertEquals(judgeFolder(dir, none, record(), null, never).verdict, "refuse");
});

Deno.test("run.lock: eval's shared hold and a run's exclusive one exclude each other; readers overlap", async () => {
  await withTmp("lvit-f1u-", async (dir) => {
    const r1 = await holdForReading(dir, () => {});
    const r2 = await holdForReading(dir, () => {});
    // A writer is refused while anyone reads; status sees no writer.
    await expectRejection("run while eval", RunLockedError, () => new RunStateWriter().claim(dir));
    assertEquals(await lockHeld(dir), false);
    r1.release();
    r2.release();
    const w = new RunStateWriter();
    await w.claim(dir);
    await expectRejection(
      "eval while run",
      RunLockedError,
      () => holdForReading(dir, () => {}),
      `pid ${Deno.pid}`,
    );
    await w.end("finished");
    // take + release: locked and let go without a record.
    const look = new RunStateWriter();
    await look.take(dir);
    assertEquals(await lockHeld(dir), true);
    look.release();
    assertEquals([await lockHeld(dir), (await readRunState(dir))?.state], [false, "finished"]);
    // A record saying running with nobody holding the lock: the next writer logs it.
    await Deno.writeTextFile(join(dir, "state.json"), JSON.stringify(record({ pid: 7 })));
    const lines: string[] = [];
    const next = new RunStateWriter();
    await next.claim(dir, (l) => lines.push(l));
    assertEquals(lines.length, 1);
    assert(lines[0].includes("previous process pid 7 on host node-a"), lines[0]);
    assert(lines[0].includes("ended without recording why"), lines[0]);
    await next.end("paused", "interrupted");
  });
});

// ---------------------------------------------------------------------------------------------
// Class 2: data set identities.

Deno.test("data identity: names, sizes and texts; modification times and the root left out", async () => {
  await withTmp("lvit-f2u-", async (dir) => {
    const a = join(dir, "a"), b = join(dir, "b");
    await generateSynth({ out: a, seed: 1, train: 4, val: 2, test: 2, size: 32 });
    await generateSynth({ out: b, seed: 2, train: 4, val: 2, test: 2, size: 32 });
    const la = await listLvitDataset("qata", a);
    const ia = await datasetIdentity(la);
    assert(/^[0-9a-f]{64}$/.test(ia), ia);
    assert(ia !== await identityOf("qata", b), "two data sets share an identity");
    // Touched (new mtime): the cache fingerprint changes, the identity does not.
    const fp = await datasetFingerprint(la);
    const img = la.splits.train[0].imagePath;
    await Deno.utime(img, new Date(2001, 1, 1), new Date(2001, 1, 1));
    assert(fp !== await datasetFingerprint(la), "the cache fingerprint ignored the mtime");
    assertEquals(await datasetIdentity(la), ia);
    // A file replaced by one of another size: another data set.
    await Deno.writeFile(img, new Uint8Array([...await Deno.readFile(img), 0]));
    assert(ia !== await datasetIdentity(la), "a changed file kept the identity");

    checkDataIdentity("f", undefined, ia, a);
    checkDataIdentity("f", ia, ia, a);
    const e = expectError(
      "mismatch",
      InputError,
      () => checkDataIdentity("x.safetensors", "0123456789abcdef99", ia, a),
      "x.safetensors: written for data set 0123456789abcdef, but the data set at",
      ia.slice(0, 16),
      "use another --out",
    );
    // Only the first 16 digits are shown (the temporary path may hold "99", so look for the tail).
    assert(!e.message.includes("abcdef99"), e.message);
  });
});

Deno.test("backend of a resumed run: the same says nothing, another is one line", () => {
  const meta = new Map(Object.entries(lastMeta(initialState(), ident)));
  assertEquals(backendChange(meta, "cpu", "BLAS x"), null);
  assertEquals(backendChange(new Map(), "webgpu", "H100"), null);
  const line = backendChange(meta, "webgpu", "NVIDIA H100");
  assert(line !== null && line.includes("written on cpu (BLAS x)"), String(line));
  assert(line.includes("runs on webgpu (NVIDIA H100)") && line.includes("not bitwise"), line);
});

// ---------------------------------------------------------------------------------------------
// Class 5: the trainer state of last.safetensors.

const ident: CheckpointIdentity = {
  hash: "abcd1234",
  data: "d".repeat(64),
  backend: "cpu",
  adapter: "BLAS x",
};
const recipe: Recipe = {
  epochs: 5,
  batch: 2,
  lr: 0.01,
  schedule: { kind: "constant", t0: 10, t_mult: 1, eta_min: 0 },
  patience: 50,
  min_save_epoch: 2,
  eval_every: 1,
  checkpoint_every: 0,
  max_steps_per_epoch: null,
};

Deno.test("stepsInEpoch counts epochBatches without shuffling: supervised, semi, capped", () => {
  const semi: SemiPlan = {
    ...supervisedPlan(7),
    labeled: [0, 2, 4, 6, 8],
    unlabeled: [1, 3, 5, 7, 9, 10, 11],
    prototype_epochs: 2,
  };
  for (const plan of [supervisedPlan(9), semi]) {
    for (const r of [recipe, { ...recipe, max_steps_per_epoch: 3 }, { ...recipe, batch: 3 }]) {
      for (let e = 1; e <= 5; e++) {
        assertEquals(stepsInEpoch(plan, r, e), epochBatches(plan, r, 7, e).length);
      }
    }
  }
  assertEquals([1, 2, 3].map((e) => stepsInEpoch(semi, recipe, e)), [2, 2, 5]);
});

Deno.test("trainer state: every field checked against the recipe, named with the file", () => {
  const plan = supervisedPlan(9); // 4 steps per epoch
  const meta = (st: Record<string, unknown> | string, over: Record<string, string> = {}) =>
    new Map(Object.entries({
      ...lastMeta(initialState(), ident),
      trainer_state: typeof st === "string" ? st : JSON.stringify(st),
      ...over,
    }));
  const parse = (m: Map<string, string>) => parseTrainerState(m, "L.st", "abcd1234", recipe, plan);
  const ok = {
    epoch: 3,
    stepInEpoch: 2,
    steps: 10,
    lossSum: 1.5,
    bestDice: 0.25,
    bestEpoch: 2,
    done: false,
    stoppedEarly: false,
  };
  assertEquals(parse(meta(ok)), ok as TrainerState);
  // Round trip of the writer's own metadata; -Infinity (no best yet) is stored as null.
  const fresh = { ...initialState(), epoch: 2, steps: 4 };
  assertEquals(parse(new Map(Object.entries(lastMeta(fresh, ident)))), fresh);
  // Finished by epochs or by early stopping.
  const done = { ...ok, epoch: 6, stepInEpoch: 0, steps: 20, lossSum: 0, done: true };
  assertEquals(parse(meta(done)).done, true);
  assertEquals(
    parse(meta({ ...done, epoch: 4, steps: 12, stoppedEarly: true })).stoppedEarly,
    true,
  );

  const bad: [Record<string, unknown> | string, string[]][] = [
    ["{oops", ["L.st: metadata trainer_state: not JSON"]],
    ["[1, 2]", ["must be a JSON object"]],
    [{ ...ok, steps: undefined }, ["field steps: is missing"]],
    [{ ...ok, extra: 1 }, ["unknown field(s) extra"]],
    [{ ...ok, epoch: 0 }, ["field epoch: must be an integer >= 1, got 0"]],
    [{ ...ok, epoch: 2.5 }, ["field epoch: must be an integer >= 1, got 2.5"]],
    [{ ...ok, epoch: "3" }, ['field epoch: must be an integer >= 1, got "3"']],
    [{ ...ok, lossSum: -1 }, ["field lossSum: must be a finite number >= 0, got -1"]],
    [{ ...ok, bestDice: 1.5 }, ["field bestDice: must be a number in [0, 1] or null"]],
    [{ ...ok, done: "no" }, ["field done: must be true or false"]],
    [{ ...ok, epoch: 6, steps: 20, stepInEpoch: 0 }, ["field epoch: 6 is beyond train.epochs (5)"]],
    [{ ...ok, epoch: 7, done: true }, ["field epoch: 7 is beyond"]],
    [{ ...ok, stepInEpoch: 5, steps: 13 }, ["field stepInEpoch: 5, but epoch 3 has 4 steps"]],
    [{ ...ok, steps: 11 }, ["field steps: 11, but epochs 1-2 and 2 step(s) of epoch 3 make 10"]],
    [{ ...ok, stepInEpoch: 0, steps: 8 }, ["field lossSum: 1.5 at the start of an epoch"]],
    [{ ...ok, bestEpoch: null }, ["field bestEpoch: null with bestDice 0.25"]],
    [{ ...ok, bestEpoch: 3 }, ["field bestEpoch: 3, outside train.min_save_epoch (2)"]],
    [{ ...ok, bestEpoch: 1 }, ["field bestEpoch: 1, outside"]],
    [{ ...ok, stoppedEarly: true }, ["field stoppedEarly: true while done is false"]],
  ];
  for (const [st, needles] of bad) {
    expectError(JSON.stringify(st), InputError, () => parse(meta(st)), "L.st", ...needles);
  }
  expectError("format", InputError, () => parse(meta(ok, { format: "x" })), "no trainer state");
  expectError("hash", InputError, () => parse(meta(ok, { config_hash: "ffff0000" })), "ffff0000");
});

// ---------------------------------------------------------------------------------------------
// Class 6: non-finite tensors.

Deno.test("non-finite tensors: found by name; refused on load unless allowed; refused by init_from", () => {
  const ok = new Float32Array([1, -2, 0, 3e38]);
  assertEquals(firstNonFinite([["a", ok], ["b", { data: ok }]]), null);
  for (const v of [NaN, Infinity, -Infinity]) {
    assertEquals(firstNonFinite([["a", ok], ["b", new Float32Array([0, 1, v])]]), {
      name: "b",
      index: 2,
      value: v,
    });
  }
  const tensors = new Map([
    ["w", { shape: [2, 2], data: new Float32Array([1, 2, NaN, 4]) }],
    ["b", { shape: [2], data: new Float32Array([0, 0]) }],
  ]);
  const bytes = encodeSafetensors(tensors);
  const expected = new Map<string, readonly number[]>([["w", [2, 2]], ["b", [2]]]);
  expectError(
    "NaN on load",
    CheckpointError,
    () => matchStateDict("ck.safetensors", bytes, expected),
    "ck.safetensors: tensor w holds NaN (element 2)",
  );
  const r = matchStateDict("ck.safetensors", bytes, expected, { allowNonFinite: true });
  assert(Number.isNaN(r.values.get("w")![2]));
  expectError(
    "NaN in init_from",
    CheckpointError,
    () => matchInit({ path: "p", file: "p.safetensors", bytes, sha256: "0" }, expected),
    "model.init_from: p.safetensors: tensor w holds NaN",
  );
});

// ---------------------------------------------------------------------------------------------
// Class 7: file-system errors as one line.

Deno.test("file-system errors: unwritable paths exit 2, a full disk exits 1, others are not ours", async () => {
  await withTmp("lvit-f7u-", async (dir) => {
    const file = join(dir, "f");
    await Deno.writeTextFile(file, "");
    const err = await Deno.mkdir(join(file, "x")).then(() => null, (e) => e);
    assertEquals([err?.code, osErrorExit(err)], ["ENOTDIR", 2]);
    const missing = await Deno.readFile(join(dir, "none")).then(() => null, (e) => e);
    assertEquals(osErrorExit(missing), null);
  });
  const fake = (code: string, msg = `x (os error 1): open '/p'`) =>
    Object.assign(new Error(msg), { code });
  assertEquals(
    ["EROFS", "EACCES", "EPERM", "ENOSPC", "EDQUOT", "EFBIG"].map((c) => osErrorExit(fake(c))),
    [2, 2, 2, 1, 1, 1],
  );
  assertEquals(osErrorExit(fake("ENOSPC", "not from the OS")), null);
  assertEquals(osErrorExit("ENOSPC"), null);
});
