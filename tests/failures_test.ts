/**
 * Issue 15, classes 1, 2, 5, 6 and 7, from the command line: each test first reproduces a
 * failing case of the issue, then one more case of the same class; every refusal exits with the
 * documented code, prints one message naming the file, field or holder and no stack trace, and
 * leaves earlier results as they were.
 *
 * 1. One writer per run folder (run.lock): a second run, `--force`, `deno task eval` and a sweep
 *    point are refused (exit 2) with the holder's pid; a holder that died is reported.
 * 2. A run is tied to its data set: another data set (LVIT_DATA) does not reuse a finished run
 *    folder, does not resume it and is not scored by eval (exit 2, both identities).
 * 5. A damaged trainer state in last.safetensors is exit 2 naming the field and the file.
 * 6. A non-finite loss or weights stop training (exit 1, the epoch/step named, nothing NaN
 *    saved); a checkpoint with NaN weights is refused by eval, --resume and init_from (exit 2).
 * 7. Unwritable output and a full disk: exit 2 or 1 with the path and the errno in one line.
 *
 * Only modules that existed before issue 15 are imported, so this file also runs against the
 * old code (where every test here fails). The parts behind these tests are unit-tested in
 * failures_unit_test.ts.
 */
import { join } from "node:path";
import { resolveExperimentText } from "../lib/config/load.ts";
import { generateSynth } from "../lib/data/synth.ts";
import { readMetrics } from "../lib/run/folder.ts";
import { readRunState, RunStateWriter } from "../lib/run/state.ts";
import { assert, assertEquals } from "./assert.ts";
import { assertNoStackTrace, sha256File, withTmp } from "./process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const RUN = join(ROOT, "lib/cli/run.ts");
const EVAL = join(ROOT, "lib/cli/eval.ts");
const SWEEP = join(ROOT, "lib/cli/sweep.ts");
const SYNTH = join(ROOT, "lib/cli/data_synth.ts");

/** `deno run -A --unstable-webgpu <args>` with extra environment variables. */
async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp", ...env },
  }).output();
  const d = new TextDecoder();
  return { code: out.code, text: d.decode(out.stdout) + d.decode(out.stderr) };
}

/** `r` exited with `code` (its output in the failure message). */
function exits(r: { code: number; text: string }, code: number): void {
  assert(r.code === code, `expected exit ${code}, got ${r.code}:\n${r.text}`);
}

/** `r` exited with `code`, without a stack trace, and its output names every needle. */
function refused(r: { code: number; text: string }, code: number, ...needles: string[]): void {
  assert(r.code === code, `expected exit ${code}, got ${r.code}:\n${r.text}`);
  assertNoStackTrace(r.text);
  for (const n of needles) assert(r.text.includes(n), `output does not name '${n}':\n${r.text}`);
}

/** The one line of `text` that names `needle` (the message must be a single line). */
function lineWith(text: string, needle: string): string {
  const ls = text.split("\n").filter((l) => l.includes(needle));
  assert(ls.length === 1, `expected one line naming '${needle}', got ${ls.length}:\n${text}`);
  return ls[0];
}

/** A tiny experiment (U-Net 4-8, 32x32, cpu); `data` replaces the generated data set. */
function tiny(dir: string, o: { train?: string; epochs?: number; data?: string } = {}): string {
  return [
    "name: tiny",
    "seed: 5",
    "backend: cpu",
    o.data ??
      `data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: ${dir}/cache }`,
    "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
    `train: { epochs: ${o.epochs ?? 3}, batch: 2, lr: 0.01, min_save_epoch: 2${o.train ?? ""} }`,
    "eval: { overlays: 1 }",
  ].join("\n") + "\n";
}

/** Writes experiment `text` as `<dir>/<name>` and returns its path and run folder. */
async function experiment(dir: string, name: string, text: string, out: string) {
  const file = join(dir, name);
  await Deno.writeTextFile(file, text);
  const { hash } = resolveExperimentText(file, text);
  return { file, runDir: join(out, "tiny", "default", hash) };
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
const epochNumbers = async (runDir: string) =>
  (await readMetrics(join(runDir, "metrics.jsonl"))).filter((m) => m.kind === "epoch").map((m) =>
    m.epoch as number
  );

/** Hashes of the files of a run folder that no refused process may touch. */
async function snapshot(runDir: string, files: string[]): Promise<string[]> {
  return await Promise.all(files.map((f) => sha256File(join(runDir, f))));
}

// ---------------------------------------------------------------------------------------------
// safetensors edited byte by byte (no library code, so the old code reads the same files).

/** Header JSON, its end and the data start of a safetensors file's bytes. */
function header(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { h, data: 8 + n };
}

/** Rewrites the metadata of a safetensors file (tensor bytes unchanged). */
async function editMetadata(path: string, f: (m: Record<string, string>) => void): Promise<void> {
  const bytes = await Deno.readFile(path);
  const { h, data } = header(bytes);
  f(h.__metadata__);
  let text = JSON.stringify(h);
  text += " ".repeat((8 - (text.length % 8)) % 8);
  const head = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + head.length + bytes.length - data);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(bytes.subarray(data), 8 + head.length);
  await Deno.writeFile(path, out);
}

/** Sets element 0 of f32 tensor `name` to `value`. */
async function poke(path: string, name: string, value: number): Promise<void> {
  const bytes = await Deno.readFile(path);
  const { h, data } = header(bytes);
  assert(h[name]?.dtype === "F32", `${path}: no f32 tensor ${name}`);
  new DataView(bytes.buffer).setFloat32(data + h[name].data_offsets[0], value, true);
  await Deno.writeFile(path, bytes);
}

/** The f32 tensors of a safetensors file that hold NaN or infinity. */
async function nonFiniteTensors(path: string): Promise<string[]> {
  const bytes = await Deno.readFile(path);
  const { h, data } = header(bytes);
  const dv = new DataView(bytes.buffer);
  const bad: string[] = [];
  const entries = Object.entries(h) as [string, { dtype: string; data_offsets: number[] }][];
  for (const [name, t] of entries) {
    if (name === "__metadata__" || t.dtype !== "F32") continue;
    for (let o = data + t.data_offsets[0]; o < data + t.data_offsets[1]; o += 4) {
      if (!Number.isFinite(dv.getFloat32(o, true))) {
        bad.push(name);
        break;
      }
    }
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// Class 1: one writer per run folder.

/** Starts a long run of `file` into `out` and waits until it has trained an epoch. */
async function startLong(file: string, out: string, runDir: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", RUN, file, "--out", out],
    stdout: "null",
    stderr: "null",
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).spawn();
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 50));
    if ((await epochNumbers(runDir)).length >= 1) return child;
  }
  child.kill("SIGKILL");
  await child.status;
  throw new Error("the long run wrote no epoch");
}

Deno.test("class 1: a second run, --force and eval of a live run exit 2 naming its pid; a dead holder is reported", async () => {
  await withTmp("lvit-f1-", async (dir) => {
    const out = join(dir, "runs");
    // Enough epochs (a few ms each) that the first run is alive while the others try.
    const { file, runDir } = await experiment(
      dir,
      "long.yaml",
      tiny(dir, { epochs: 5000, train: ", patience: 5000" }),
      out,
    );
    const child = await startLong(file, out, runDir);
    const holder = `pid ${child.pid}`;
    try {
      // The cases: a second run of the same experiment into the same --out, and with
      // --force (which deleted the live run's files). A time limit bounds them should they run.
      const limit = ["--time-limit", "1"];
      const second = await cli([RUN, file, "--out", out, ...limit]);
      refused(second, 2, holder, join(runDir, "run.lock"));
      lineWith(second.text, holder);
      const forced = await cli([RUN, file, "--out", out, "--force", ...limit]);
      refused(forced, 2, holder);
      assert(await exists(join(runDir, "checkpoints", "last.safetensors")), "--force deleted");
      const resumed = await cli([RUN, file, "--out", out, "--resume", ...limit]);
      refused(resumed, 2, holder);
      // One more: eval of the run being trained.
      refused(await cli([EVAL, runDir]), 2, holder);
      assert(!(await exists(join(runDir, "eval"))), "the refused eval wrote eval/");
      // The live run was never disturbed: its log holds each epoch once, in order.
      const epochs = await epochNumbers(runDir);
      assertEquals(epochs, epochs.map((_, i) => i + 1));
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    // Killed: the OS dropped its lock, state.json still says running. The next process takes
    // the folder and says whose it was (never silently).
    const rec = await readRunState(runDir);
    assertEquals([rec?.state, rec?.pid], ["running", child.pid]);
    const next = await cli([RUN, file, "--out", out, "--resume", "--time-limit", "0.001"]);
    exits(next, 75);
    const note = lineWith(next.text, "ended without recording why");
    assert(note.includes(`previous process ${holder}`), note);
    if (rec?.host) assert(note.includes(`on host ${rec.host}`), note);
    const epochs = await epochNumbers(runDir);
    assertEquals(epochs, epochs.map((_, i) => i + 1));
  });
});

Deno.test("class 1: a sweep point whose run folder another process holds fails with exit 2 naming it", async () => {
  await withTmp("lvit-f1s-", async (dir) => {
    await Deno.writeTextFile(join(dir, "base.yaml"), tiny(dir, { epochs: 1 }));
    const file = join(dir, "s.sweep.yaml");
    await Deno.writeTextFile(file, "name: locked\nbase: base.yaml\naxes:\n  seed: [5]\n");
    const out = join(dir, "runs");
    const dry = await cli([SWEEP, file, "--dry-run", "--out", out]);
    exits(dry, 0);
    const point = dry.text.split("\n").find((l) => l.includes("pending"))!.trim().split(/\s+/)
      .pop()!;
    // This test process holds the point's folder as a run would.
    await Deno.mkdir(point, { recursive: true });
    const holder = new RunStateWriter();
    await holder.claim(point);
    try {
      const r = await cli([SWEEP, file, "--out", out]);
      refused(r, 1, `FAILED`, `(exit 2`, `pid ${Deno.pid}`);
      assert(!(await exists(join(point, "summary.json"))), "the locked point ran");
    } finally {
      await holder.end("paused", "interrupted");
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Class 2: a run is tied to its data set.

/** Two generated data sets (seeds 1 and 2) in the LViT layout, and a copy of the first. */
async function twoDataSets(dir: string) {
  const a = join(dir, "dataA"), b = join(dir, "dataB"), copy = join(dir, "dataA-copy");
  const opts = { train: 8, val: 4, test: 4, size: 32 };
  await generateSynth({ out: a, seed: 1, ...opts });
  await generateSynth({ out: b, seed: 2, ...opts });
  // A plain copy: new modification times, same files (the same data set).
  await Deno.mkdir(copy);
  const walk = async (from: string, to: string) => {
    for await (const e of Deno.readDir(from)) {
      if (e.isDirectory) {
        await Deno.mkdir(join(to, e.name));
        await walk(join(from, e.name), join(to, e.name));
      } else await Deno.copyFile(join(from, e.name), join(to, e.name));
    }
  };
  await walk(a, copy);
  return { a, b, copy };
}

/** The two 16-hex data set identities a mismatch message names, checked to differ. */
function bothIdentities(text: string): [string, string] {
  const m = text.match(/data set ([0-9a-f]{16}), but the data set at \S+ is ([0-9a-f]{16})/);
  assert(m, `no pair of data set identities in:\n${text}`);
  assert(m[1] !== m[2], text);
  return [m[1], m[2]];
}

Deno.test("class 2: another LVIT_DATA does not reuse a finished run folder nor eval its checkpoint (exit 2, both identities)", async () => {
  await withTmp("lvit-f2-", async (dir) => {
    const { a, b, copy } = await twoDataSets(dir);
    const out = join(dir, "runs");
    const data = `data: { dataset: qata, cache_dir: ${dir}/cache }`;
    const { file, runDir } = await experiment(dir, "q.yaml", tiny(dir, { data }), out);
    const first = await cli([RUN, file, "--out", out], { LVIT_DATA: a });
    exits(first, 0);
    const files = ["summary.json", "env.json", "metrics.jsonl", "checkpoints/best.safetensors"];
    const before = await snapshot(runDir, files);
    // The case: the same config on another data set said "this run is finished".
    const other = await cli([RUN, file, "--out", out], { LVIT_DATA: b });
    refused(other, 2, join(runDir, "summary.json"), b);
    const [was, now] = bothIdentities(other.text);
    // One more: eval on the other data set names the checkpoint and the same two identities.
    const ev = await cli([EVAL, runDir], { LVIT_DATA: b });
    refused(ev, 2, join(runDir, "checkpoints", "best.safetensors"));
    assertEquals(bothIdentities(ev.text), [was, now]);
    assertEquals(await snapshot(runDir, files), before);
    assert(!(await exists(join(runDir, "eval"))), "the refused eval wrote eval/");
    // A copy of the data set (new modification times) is the same data set.
    const again = await cli([RUN, file, "--out", out], { LVIT_DATA: copy });
    assert(again.code === 0 && again.text.includes("this run is finished"), again.text);
    const ev2 = await cli([EVAL, runDir], { LVIT_DATA: copy });
    exits(ev2, 0);
  });
});

Deno.test("class 2: --resume on another data set is exit 2 with both identities; env.json and the checkpoint stay", async () => {
  await withTmp("lvit-f2r-", async (dir) => {
    const { a, b } = await twoDataSets(dir);
    const out = join(dir, "runs");
    const data = `data: { dataset: qata, cache_dir: ${dir}/cache }`;
    const { file, runDir } = await experiment(dir, "q.yaml", tiny(dir, { data }), out);
    const paused = await cli([RUN, file, "--out", out, "--time-limit", "0.001"], {
      LVIT_DATA: a,
    });
    exits(paused, 75);
    const files = ["env.json", "metrics.jsonl", "checkpoints/last.safetensors"];
    const before = await snapshot(runDir, files);
    const r = await cli([RUN, file, "--out", out, "--resume"], { LVIT_DATA: b });
    refused(r, 2, join(runDir, "checkpoints", "last.safetensors"), b);
    bothIdentities(r.text);
    assertEquals(await snapshot(runDir, files), before);
    // Its own data set continues it.
    const ok = await cli([RUN, file, "--out", out, "--resume"], { LVIT_DATA: a });
    exits(ok, 0);
    assertEquals(await epochNumbers(runDir), [1, 2, 3]);
  });
});

// ---------------------------------------------------------------------------------------------
// Class 5: saved state is validated.

Deno.test("class 5: a damaged trainer state in last.safetensors is exit 2 naming the field and the file", async () => {
  await withTmp("lvit-f5-", async (dir) => {
    const out = join(dir, "runs");
    const { file, runDir } = await experiment(dir, "t.yaml", tiny(dir), out);
    const paused = await cli([RUN, file, "--out", out, "--time-limit", "0.001"]);
    exits(paused, 75);
    const last = join(runDir, "checkpoints", "last.safetensors");
    const original = await Deno.readFile(last);
    const cases: [string, (st: Record<string, unknown>) => unknown, string[]][] = [
      // The cases: malformed JSON (a SyntaxError stack trace), a missing field (resumed
      // "at step undefined", loss NaN, exit 0), an out-of-range epoch (exit 130, no signal).
      ["malformed", () => '{"epoch": 2, "stepIn', ["trainer_state", "not JSON"]],
      ["missing", (st) => {
        delete st.stepInEpoch;
        return st;
      }, ["field stepInEpoch", "is missing"]],
      ["out of range", (st) => ({ ...st, epoch: 99 }), ["field epoch", "99", "train.epochs (3)"]],
      // One more: a step count that the epochs before do not add up to.
      ["inconsistent", (st) => ({ ...st, steps: 3 }), ["field steps", "3"]],
      ["wrong type", (st) => ({ ...st, bestDice: "high" }), ["field bestDice", '"high"']],
    ];
    for (const [what, damage, needles] of cases) {
      await Deno.writeFile(last, original);
      await editMetadata(last, (m) => {
        const st = JSON.parse(m.trainer_state);
        const d = damage(st);
        m.trainer_state = typeof d === "string" ? d : JSON.stringify(d);
      });
      const files = ["env.json", "metrics.jsonl", "checkpoints/last.safetensors"];
      const before = await snapshot(runDir, files);
      const r = await cli([RUN, file, "--out", out, "--resume", "--time-limit", "0.001"]);
      try {
        refused(r, 2, last, ...needles);
        lineWith(r.text, "trainer_state");
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}`);
      }
      assertEquals(await snapshot(runDir, files), before);
    }
    // The undamaged checkpoint still resumes.
    await Deno.writeFile(last, original);
    const ok = await cli([RUN, file, "--out", out, "--resume"]);
    exits(ok, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Class 6: non-finite numbers are failures.

Deno.test("class 6: a diverging run (train.lr=1e30) exits 1 naming the epoch; nothing NaN is saved", async () => {
  await withTmp("lvit-f6-", async (dir) => {
    const out = join(dir, "runs");
    const { file } = await experiment(dir, "t.yaml", tiny(dir), out);
    // The case: loss NaN, NaN weights saved as best, exit 0.
    const r = await cli([RUN, file, "--out", out, "--set", "train.lr=1e30"]);
    refused(r, 1, "epoch 1", "NaN");
    const msg = lineWith(r.text, "diverged");
    assert(msg.includes("nothing was saved"), msg);
    const lrDir = join(out, "tiny", "default");
    const [hashDir] = await Array.fromAsync(Deno.readDir(lrDir), (e) => join(lrDir, e.name));
    assert(!(await exists(join(hashDir, "checkpoints", "best.safetensors"))), "best was saved");
    assert(!(await exists(join(hashDir, "checkpoints", "last.safetensors"))), "last was saved");
    assertEquals(await epochNumbers(hashDir), []);
    assertEquals((await readRunState(hashDir))?.state, "failed");
    assert(!(await exists(join(hashDir, "summary.json"))), "a summary was written");

    // One more: weights that turn non-finite between two loss read-backs, with a checkpoint
    // every step: the NaN step is not saved, last.safetensors keeps the last finite one.
    const sets = ["--set", "train.lr=1e30", "--set", "train.checkpoint_every=1"];
    const r2 = await cli([RUN, file, "--out", out, ...sets]);
    refused(r2, 1, "diverged", "keeps the last finite state");
    const m2 = lineWith(r2.text, "diverged");
    const step = m2.match(/at epoch 1, step (\d+)/);
    assert(step, m2);
    const dirs = await Array.fromAsync(Deno.readDir(lrDir), (e) => join(lrDir, e.name));
    const d2 = dirs.find((d) => d !== hashDir)!;
    const last = join(d2, "checkpoints", "last.safetensors");
    assertEquals(await nonFiniteTensors(last), []);
    const st = JSON.parse(header(await Deno.readFile(last)).h.__metadata__.trainer_state);
    assert(st.steps < Number(step[1]), `last holds step ${st.steps}, the NaN came at ${step[1]}`);
  });
});

Deno.test("class 6: a checkpoint with NaN weights is refused by eval, --resume and init_from (exit 2, the tensor named)", async () => {
  await withTmp("lvit-f6c-", async (dir) => {
    const out = join(dir, "runs");
    const { file, runDir } = await experiment(dir, "t.yaml", tiny(dir), out);
    assertEquals((await cli([RUN, file, "--out", out])).code, 0);
    const best = join(runDir, "checkpoints", "best.safetensors");
    const tensor = "outc.weight";
    await poke(best, tensor, NaN);
    // The case: NaN weights scored as Dice 0, exit 0.
    const ev = await cli([EVAL, runDir]);
    refused(ev, 2, best, tensor, "NaN");
    lineWith(ev.text, tensor);
    assert(!(await exists(join(runDir, "eval"))), "the refused eval wrote eval/");
    // Asked for: scored.
    const asked = await cli([EVAL, runDir, "--allow-non-finite"]);
    exits(asked, 0);
    // One more: init_from of the same file, and --resume from a last.safetensors with +Inf.
    const init = await cli([
      RUN,
      file,
      "--out",
      join(dir, "runs2"),
      "--set",
      `model.init_from=${best}`,
    ]);
    refused(init, 2, best, tensor);
    const out3 = join(dir, "runs3");
    const paused = await cli([RUN, file, "--out", out3, "--time-limit", "0.001"]);
    exits(paused, 75);
    const last = join(
      out3,
      "tiny",
      "default",
      runDir.split("/").pop()!,
      "checkpoints",
      "last.safetensors",
    );
    await poke(last, tensor, Infinity);
    const resumed = await cli([RUN, file, "--out", out3, "--resume"]);
    refused(resumed, 2, last, tensor, "Infinity");
  });
});

// ---------------------------------------------------------------------------------------------
// Class 7: unwritable output and full disks.

/** Runs a command (mount, umount); true when it succeeded. */
async function sh(cmd: string, ...args: string[]): Promise<boolean> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

/**
 * A folder nothing can be written into: mode 0555, or (for root, whom modes do not stop) a
 * read-only tmpfs mounted there. Null where neither works (root without mount rights).
 */
async function readOnlyDir(parent: string): Promise<{ dir: string; undo(): Promise<void> } | null> {
  const dir = join(parent, "ro");
  await Deno.mkdir(dir);
  await Deno.chmod(dir, 0o555);
  const writable = await Deno.writeTextFile(join(dir, "probe"), "").then(() => true, () => false);
  if (!writable) return { dir, undo: () => Deno.chmod(dir, 0o755) };
  await Deno.remove(join(dir, "probe"));
  await Deno.chmod(dir, 0o755);
  if (!(await sh("mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", dir))) return null;
  return { dir, undo: async () => void await sh("umount", dir) };
}

/** The output has exactly one line with an errno (`(os error N)`), and it names `path`. */
function osLine(text: string, path: string): void {
  const line = lineWith(text, "(os error ");
  assert(line.includes(path), `the error line does not name ${path}:\n${text}`);
}

Deno.test("class 7: --out, data.cache_dir and data:synth --out unwritable: exit 2, the path and errno in one line", async () => {
  await withTmp("lvit-f7-", async (dir) => {
    const { file } = await experiment(dir, "t.yaml", tiny(dir), join(dir, "runs"));
    // The case, in a form that holds for root too: --out below a regular file.
    const plain = join(dir, "a-file");
    await Deno.writeTextFile(plain, "");
    const r = await cli([RUN, file, "--out", join(plain, "runs")]);
    refused(r, 2, "Not a directory");
    osLine(r.text, join(plain, "runs"));
    const ro = await readOnlyDir(dir);
    if (!ro) {
      console.log("class 7: no read-only folder here (root without mount rights): skipped");
      return;
    }
    try {
      const o = await cli([RUN, file, "--out", join(ro.dir, "runs")]);
      refused(o, 2);
      osLine(o.text, join(ro.dir, "runs"));
      // One more: the data cache (where the generated data set is written) and data:synth.
      const c = await cli([
        RUN,
        file,
        "--out",
        join(dir, "runs"),
        "--set",
        `data.cache_dir=${ro.dir}/c`,
      ]);
      refused(c, 2);
      osLine(c.text, join(ro.dir, "c"));
      const s = await cli([SYNTH, "--out", join(ro.dir, "syn"), "--train", "2", "--size", "32"]);
      refused(s, 2);
      osLine(s.text, join(ro.dir, "syn"));
    } finally {
      await ro.undo();
    }
  });
});

Deno.test("class 7: a full disk (2 MiB tmpfs) is exit 1 with the path and ENOSPC in one line; the checkpoint survives", async () => {
  await withTmp("lvit-f7d-", async (dir) => {
    const disk = join(dir, "disk");
    await Deno.mkdir(disk);
    if (!(await sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk))) {
      console.log("class 7: cannot mount a tmpfs here (not root): skipped");
      return;
    }
    try {
      const out = join(disk, "runs");
      const { file, runDir } = await experiment(dir, "t.yaml", tiny(dir), out);
      const paused = await cli([RUN, file, "--out", out, "--time-limit", "0.001"]);
      exits(paused, 75);
      const files = ["checkpoints/last.safetensors", "metrics.jsonl", "config.yaml"];
      const before = await snapshot(runDir, files);
      // Fill the disk to the last byte.
      const f = await Deno.open(join(disk, "filler"), { write: true, create: true });
      try {
        for (const chunk = new Uint8Array(64 << 10);;) await f.write(chunk);
      } catch {
        // ENOSPC: full.
      } finally {
        f.close();
      }
      const r = await cli([RUN, file, "--out", out, "--resume"]);
      refused(r, 1, "No space left on device (os error 28)");
      assert(lineWith(r.text, "(os error 28)").includes(runDir), r.text);
      assertEquals(await snapshot(runDir, files), before);
    } finally {
      await sh("umount", disk);
    }
  });
});
