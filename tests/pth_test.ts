/**
 * Official PyTorch checkpoints (issue 17, item 4): `.pth` files convert to safetensors bit-exactly
 * without running pickle code, and everything else is refused with exit 2 and one message.
 *
 * - Always: the committed fixture (tests/fixtures/tiny_state_dict.pth, written by Debian's
 *   python3-torch 1.13 with tests/fixtures/pth_gen.py --fixture) against the bytes PyTorch
 *   recorded for it; hand-built pickles (a small writer below) that call os.system,
 *   builtins.eval, ..., malformed or over-limit pickles, views gathered from their storage;
 *   truncated, corrupted and incomplete zips.
 * - Where /usr/bin/python3 imports torch (else ignored, with the reason in the name and printed):
 *   checkpoints generated here by PyTorch (state_dicts, wrapper dicts, DataParallel, every dtype,
 *   views, parameters, pickle protocol 4) against the bytes PyTorch prints for each tensor; live
 *   exploits (os.system, builtins.eval; torch.load runs them, shown) and a pickled nn.Module
 *   refused; `model.init_from` and checkpoint loading reading a .pth directly.
 */
import { join } from "node:path";
import { assert, assertEquals, expectError, expectRejection } from "./assert.ts";
import { assertNoStackTrace, denoRun, sha256File, withTmp } from "./process.ts";
import { zipSync } from "../lib/deps.ts";
import { decodePth, PthError, pthToSafetensors, readPthBytes, sha256Hex } from "../lib/io/pth.ts";
import { PickleError, PyDict, unpickle } from "../lib/io/pickle.ts";
import { decodeSafetensors, encodeSafetensors, type OutTensor } from "../lib/io/safetensors.ts";
import { loadCheckpoint, saveCheckpoint } from "../lib/io/checkpoint.ts";
import { initSession, matchInit, readInitSource } from "../lib/run/init_from.ts";
import { selectBackend } from "../lib/backends/select.ts";
import { Session } from "../lib/train/session.ts";
import { buildModel } from "../lib/models/registry.ts";
import { resolveExperimentText } from "../lib/config/load.ts";
import { runExperiment } from "../lib/run/runner.ts";
import { evaluate } from "../lib/run/evaluate.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const FIXTURE = join(ROOT, "tests/fixtures/tiny_state_dict.pth");
const CONVERT = join(ROOT, "lib/cli/convert.ts");
const PYTHON = "/usr/bin/python3";
const enc = new TextEncoder();

/** null when PYTHON imports torch, else why not. */
function torchMissing(): string | null {
  try {
    const r = new Deno.Command(PYTHON, {
      args: ["-c", "import torch; print(torch.__version__)"],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (r.code === 0) return null;
    const err = new TextDecoder().decode(r.stderr).trim().split("\n").pop();
    return `${PYTHON} cannot import torch (${err})`;
  } catch (e) {
    return `${PYTHON} cannot run (${(e as Error).message})`;
  }
}
const NO_TORCH = torchMissing();
if (NO_TORCH) {
  console.log(`pth_test: the PyTorch-generated cases are ignored: ${NO_TORCH}`);
}
const TORCH = NO_TORCH ? `ignored: ${NO_TORCH}` : "PyTorch at /usr/bin/python3";

type Expected = {
  key: string | null;
  stripped: boolean;
  tensors: [string, string, number[], string][];
};

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A safetensors file's tensors as [name, dtype, shape, hex bytes] in file order, and metadata. */
function rawSafetensors(bytes: Uint8Array) {
  const hl = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hl)));
  const meta = header.__metadata__ ?? {};
  delete header.__metadata__;
  const at = 8 + hl;
  const tensors = Object.entries(
    header as Record<string, {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    }>,
  ).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]).map((
    [n, e],
  ) => [n, e.dtype, e.shape, hex(bytes.subarray(at + e.data_offsets[0], at + e.data_offsets[1]))]);
  return { meta, tensors };
}

/** Runs the convert CLI; returns exit code and output. */
const convert = (...args: string[]) => denoRun([CONVERT, ...args]);

/** Exit 2, one message naming `file` and every needle, no stack trace. */
function assertRefused(r: { code: number; text: string }, file: string, ...needles: string[]) {
  assertNoStackTrace(r.text);
  assert(r.code === 2, `exit ${r.code}, expected 2:\n${r.text}`);
  for (const s of [file, ...needles]) assert(r.text.includes(s), `'${s}' not in:\n${r.text}`);
}

/** The converted tensors of `file` (library path) as [name, dtype, shape, hex]. */
function converted(bytes: Uint8Array, file: string, key?: string) {
  const sd = decodePth(bytes, file, { key });
  return {
    sd,
    tensors: [...sd.tensors].map(([n, t]) => [n, t.dtype, t.shape, hex(t.bytes)]),
  };
}

Deno.test("pth: the committed PyTorch 1.13 fixture converts bit-exactly (library, CLI, deno task)", async () => {
  const expected: Expected & { torch: string } = JSON.parse(
    await Deno.readTextFile(FIXTURE.replace(/\.pth$/, ".expected.json")),
  );
  assert(expected.torch.startsWith("1.13"), `fixture made by torch ${expected.torch}`);
  const bytes = await Deno.readFile(FIXTURE);
  const { sd, tensors } = converted(bytes, FIXTURE);
  assertEquals(tensors, expected.tensors);
  assertEquals([sd.key, sd.strippedPrefix], ["state_dict", true]);
  // The official LViT code's layout: the other entries are named, not converted.
  assertEquals(sd.others, [
    "epoch: int 7",
    "best_model: True",
    'model: str "LViT"',
    "val_loss: float 0.25",
    "optimizer: dict of 2 entries",
  ]);
  const dtypes = new Set(tensors.map((t) => t[1]));
  assertEquals([...dtypes].sort(), ["BF16", "BOOL", "F16", "F32", "F64", "I64"]);

  await withTmp("lvit-pth-", async (dir) => {
    // The deno task itself, with its read/write permissions only.
    const out = join(dir, "tiny.safetensors");
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["task", "convert", FIXTURE, "--out", out],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { XDG_RUNTIME_DIR: "/tmp" },
    }).output();
    const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    assert(r.code === 0, text);
    assert(text.includes("state_dict: the 'state_dict' entry"), text);
    assert(text.includes("stripped DataParallel's 'module.' prefix"), text);
    assert(text.includes(`wrote ${out}: 13 tensors`), text);
    const file = await Deno.readFile(out);
    const raw = rawSafetensors(file);
    assertEquals(raw.tensors, expected.tensors);
    assertEquals(raw.meta.source, "tiny_state_dict.pth");
    assertEquals(raw.meta.source_sha256, await sha256File(FIXTURE));
    assertEquals(raw.meta.source_key, "state_dict");
    // The project's reader takes it (values as f32).
    const back = decodeSafetensors(file, out).tensors;
    assertEquals(back.get("half")!.data, [0.5, -2, 5.960464477539063e-8]);
    assertEquals(back.get("view")!.data, [1, 2, 6, 7, 11, 12, 16, 17]);
    assertEquals(back.get("expand")!.data, [0, 1, 2, 0, 1, 2]);
    assertEquals(back.get("1.num_batches_tracked")!.shape, []);
    // Default output name, next to the input.
    const copy = join(dir, "official.pth.tar");
    await Deno.copyFile(FIXTURE, copy);
    const d = await convert(copy);
    assert(d.code === 0, d.text);
    assertEquals(
      await sha256File(join(dir, "official.safetensors")),
      sha256Hex(
        pthToSafetensors(decodePth(bytes, copy), { file: copy, sha256: sha256Hex(bytes) }),
      ),
    );
  });
  console.log(`fixture: ${tensors.length} tensors of 6 dtypes bit-exact against PyTorch 1.13`);
});

// ---------------------------------------------------------------------------------------------
// A small pickle writer (protocol 2), to build the files PyTorch would not write.

class Pk {
  readonly b: number[] = [0x80, 2];
  op(...xs: number[]) {
    this.b.push(...xs);
    return this;
  }
  global(module: string, name: string) {
    return this.op(0x63, ...enc.encode(`${module}\n${name}\n`));
  }
  str(s: string) {
    const u = enc.encode(s);
    const n = new Uint8Array(new Uint32Array([u.length]).buffer);
    return this.op(0x58, ...n, ...u);
  }
  int(v: number) {
    return this.op(0x4a, ...new Uint8Array(new Int32Array([v]).buffer));
  }
  mark() {
    return this.op(0x28);
  }
  tuple() {
    return this.op(0x74);
  }
  ints(xs: number[]) {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  reduce() {
    return this.op(0x52);
  }
  ordered() {
    return this.global("collections", "OrderedDict").op(0x29).reduce();
  }
  /** `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`. */
  tensor(type: string, key: string, numel: number, offset: number, size: number[], st: number[]) {
    this.global("torch._utils", "_rebuild_tensor_v2").mark();
    this.mark().str("storage").global("torch", type).str(key).str("cpu").int(numel).tuple();
    this.op(0x51).int(offset).ints(size).ints(st).op(0x89).ordered();
    return this.tuple().reduce();
  }
  stop() {
    return new Uint8Array([...this.b, 0x2e]);
  }
}

/** A torch.save-like zip (stored entries) of `pkl` and storages. */
function pthZip(pkl: Uint8Array, storages: Record<string, Uint8Array> = {}, level: 0 | 6 = 0) {
  const files: Record<string, [Uint8Array, { level: 0 | 6 }]> = {
    "a/data.pkl": [pkl, { level }],
    "a/version": [enc.encode("3\n"), { level }],
  };
  for (const [k, v] of Object.entries(storages)) files[`a/data/${k}`] = [v, { level }];
  return zipSync(files);
}

const f32 = (...xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

/** A state_dict pickle of the given tensors (name -> writer). */
function sdPickle(tensors: [string, (p: Pk) => void][]): Uint8Array {
  const p = new Pk().ordered().mark();
  for (const [n, t] of tensors) {
    p.str(n);
    t(p);
  }
  return p.op(0x75).stop();
}

Deno.test("pth: views are gathered from their storage, checked against its length", () => {
  const storage = f32(0, 1, 2, 3, 4, 5, 6, 7);
  const pkl = sdPickle([
    ["t", (p) => p.tensor("FloatStorage", "0", 8, 1, [2, 3], [1, 2])], // offset 1, transposed
    ["e", (p) => p.tensor("FloatStorage", "0", 8, 6, [2, 2], [0, 1])], // stride 0
    ["s", (p) => p.tensor("FloatStorage", "0", 8, 7, [], [])], // scalar at the end
  ]);
  const sd = decodePth(pthZip(pkl, { "0": storage }), "v.pth");
  const vals = (n: string) => Array.from(new Float32Array(sd.tensors.get(n)!.bytes.slice().buffer));
  assertEquals(vals("t"), [1, 3, 5, 2, 4, 6]);
  assertEquals(vals("e"), [6, 7, 6, 7]);
  assertEquals(vals("s"), [7]);

  const refuse = (what: string, pk: Uint8Array, st: Record<string, Uint8Array>, ...n: string[]) =>
    expectError(what, PthError, () => decodePth(pthZip(pk, st), "v.pth"), "v.pth", ...n);
  refuse(
    "past the end",
    sdPickle([["t", (p) => p.tensor("FloatStorage", "0", 8, 2, [2, 4], [4, 1])]]),
    { "0": storage },
    "tensor t",
    "reach element 9, past the storage's 8",
  );
  refuse(
    "storage length",
    sdPickle([["t", (p) => p.tensor("FloatStorage", "0", 9, 0, [9], [1])]]),
    { "0": storage },
    "storage 0 holds 32 bytes, but the pickle says 9 F32 elements (36 bytes)",
  );
  refuse(
    "missing storage",
    sdPickle([["t", (p) => p.tensor("FloatStorage", "1", 8, 0, [8], [1])]]),
    { "0": storage },
    "storage 1 has no a/data/1 entry",
  );
  refuse(
    "one key, two types",
    sdPickle([
      ["a", (p) => p.tensor("FloatStorage", "0", 8, 0, [8], [1])],
      ["b", (p) => p.tensor("IntStorage", "0", 8, 0, [8], [1])],
    ]),
    { "0": storage },
    "storage 0 is named as FloatStorage of 8 and as IntStorage of 8",
  );
  // A stride-0 view of one element may not expand past the output bound.
  expectError(
    "expansion bomb",
    PthError,
    () =>
      decodePth(
        pthZip(
          sdPickle([["t", (p) => p.tensor("FloatStorage", "0", 8, 0, [1 << 20, 1 << 10], [0, 0])]]),
          {
            "0": storage,
          },
        ),
        "v.pth",
        { limits: { maxOutputBytes: 1 << 30 } },
      ),
    "expand to more than the 1073741824 bytes (1 GiB) converted",
  );
});

Deno.test("pth: pickles calling os.system, builtins.eval, ... are refused by name, nothing runs", async () => {
  await withTmp("lvit-pth-", async (dir) => {
    const marker = join(dir, "PWNED");
    const cases: [string, Uint8Array][] = [
      [
        "posix.system",
        new Pk().global("posix", "system").str(`touch ${marker}`).op(0x85).reduce().stop(),
      ],
      [
        "os.system",
        new Pk().global("os", "system").str(`touch ${marker}`).op(0x85).reduce().stop(),
      ],
      // Protocol 4's STACK_GLOBAL takes the names from the stack.
      [
        "builtins.eval",
        new Pk().str("builtins").str("eval").op(0x93).str(`open('${marker}','w')`).op(0x85)
          .reduce().stop(),
      ],
      ["__builtin__.getattr", new Pk().global("__builtin__", "getattr").stop()],
      ["subprocess.Popen", new Pk().global("subprocess", "Popen").stop()],
      // A global named inside a valid state_dict, after its tensors.
      [
        "nt.system",
        new Pk().op(0x7d).str("state_dict").ordered().mark().str("w").tensor(
          "FloatStorage",
          "0",
          1,
          0,
          [1],
          [1],
        ).op(0x75).op(0x73).str("x").global("nt", "system").str("x").op(0x85).reduce().op(0x73)
          .stop(),
      ],
    ];
    for (const [g, pkl] of cases) {
      const e = expectError(
        g,
        PthError,
        () => decodePth(pthZip(pkl, { "0": f32(1) }), "evil.pth"),
        "evil.pth: data.pkl: ",
        `refused global ${g}`,
        "Nothing in the file was executed",
      );
      assertEquals(e.global, g);
    }
    // Through the CLI: exit 2, one message, no file created, no output written.
    const file = join(dir, "evil.pth");
    await Deno.writeFile(file, pthZip(cases[0][1]));
    const r = await convert(file, "--out", join(dir, "out.safetensors"));
    assertRefused(r, file, "refused global posix.system");
    assert(!(await exists(marker)), "the payload ran");
    assert(!(await exists(join(dir, "out.safetensors"))), "an output was written");
  });
});

Deno.test("pth: object-building opcodes and malformed or over-limit pickles are refused", () => {
  const globals = new Map([["collections.OrderedDict", { call: () => new PyDict() }]]);
  const refuse = (what: string, bytes: number[], ...needles: string[]) =>
    expectError(what, PickleError, () => unpickle(new Uint8Array(bytes), { globals }), ...needles);
  const G = [...enc.encode("collections\nOrderedDict\n")];
  refuse("INST", [0x80, 2, 0x28, 0x69, ...enc.encode("os\nsystem\n"), 0x2e], "INST", "refused");
  refuse("OBJ", [0x80, 2, 0x28, 0x63, ...G, 0x6f, 0x2e], "OBJ", "refused");
  refuse("NEWOBJ", [0x80, 2, 0x63, ...G, 0x29, 0x81, 0x2e], "NEWOBJ", "refused");
  refuse("EXT1", [0x80, 2, 0x82, 1, 0x2e], "EXT1");
  refuse("protocol 0 text", [0x49, ...enc.encode("1\n"), 0x2e], "INT (protocol 0 text)");
  refuse("unknown", [0x80, 2, 0xff], "unknown opcode 0xff");
  refuse("truncated", [0x80, 2, 0x58, 9, 0, 0, 0, 0x41], "truncated");
  refuse("no STOP", [0x80, 2, 0x4e], "ends before its STOP");
  refuse("after STOP", [0x80, 2, 0x4e, 0x2e, 0], "1 bytes after STOP");
  refuse("memo", [0x80, 2, 0x68, 3, 0x2e], "memo entry 3 read before it was written");
  refuse("deep", [0x80, 2, ...new Array(101).fill(0x28)], "nested deeper than 100 levels");
  refuse("empty stack", [0x80, 2, 0x52], "stack is empty");
  refuse("build", [0x80, 2, 0x7d, 0x7d, 0x62, 0x2e], "BUILD");
  refuse("reduce a dict", [0x80, 2, 0x7d, 0x29, 0x52, 0x2e], "REDUCE of something that is not");
  refuse("long", [0x80, 2, 0x8b, 0xff, 0xff, 0, 0, 0x2e], "65535 bytes");
  // Allowed: a dict the allow-list built, memo, nesting within the limit.
  const ok = unpickle(
    new Uint8Array([0x80, 2, 0x63, ...G, 0x29, 0x52, 0x71, 0, 0x4b, 1, 0x68, 0, 0x73, 0x2e]),
    { globals },
  ) as PyDict;
  assert(ok instanceof PyDict && ok.entries.get(1) === ok, "self-reference kept");

  // Through the .pth layer: bounds, hooks, a malformed persistent id, storages not read.
  const refusePth = (what: string, pkl: Uint8Array, ...needles: string[]) =>
    expectError(
      what,
      PthError,
      () =>
        decodePth(pthZip(pkl, { "0": f32(1, 2) }), "x.pth", {
          limits: { maxTensors: 2 },
        }),
      "x.pth",
      ...needles,
    );
  const t = (p: Pk) => p.tensor("FloatStorage", "0", 2, 0, [2], [1]);
  refusePth("tensors", sdPickle([["a", t], ["b", t], ["c", t]]), "more than 2 tensors");
  refusePth(
    "complex",
    sdPickle([["a", (p) => p.tensor("ComplexFloatStorage", "0", 1, 0, [1], [1])]]),
    "refused global torch.ComplexFloatStorage",
    "a storage type that is not read",
  );
  refusePth(
    "hooks",
    new Pk().global("torch._utils", "_rebuild_tensor_v2").mark().mark().str("storage")
      .global("torch", "FloatStorage").str("0").str("cpu").int(2).tuple().op(0x51).int(0)
      .ints([2]).ints([1]).op(0x89).ordered().str("h").int(1).op(0x73).tuple().reduce().stop(),
    "backward hooks must be an empty OrderedDict",
  );
  refusePth(
    "persistent id",
    new Pk().mark().str("storage").str("x").tuple().op(0x51).stop(),
    "a persistent id that is not ('storage'",
  );
  refusePth(
    "called storage",
    new Pk().global("torch", "FloatStorage").op(0x29).reduce().stop(),
    "torch.FloatStorage is not callable",
  );
  refusePth(
    "no tensors",
    new Pk().op(0x7d).str("epoch").int(3).op(0x73).stop(),
    "holds no state_dict",
    "epoch: int 3",
  );
  // Two state_dicts: --key chooses; a wrong --key names what there is.
  const pair = new Pk().op(0x7d).mark();
  for (const k of ["model", "ema"]) {
    pair.str(k).ordered().mark().str("w").tensor("FloatStorage", "0", 2, 0, [2], [1]).op(0x75);
  }
  const twoPkl = pair.op(0x75).stop();
  refusePth("two", twoPkl, "holds 2 state_dicts (model, ema): choose one with --key");
  const ema = decodePth(pthZip(twoPkl, { "0": f32(1, 2) }), "x.pth", { key: "ema" });
  assertEquals([ema.key, [...ema.tensors.keys()], ema.others], ["ema", ["w"], [
    "model: collections.OrderedDict of 1 entry",
  ]]);
  expectError(
    "bad key",
    PthError,
    () => decodePth(pthZip(twoPkl, { "0": f32(1, 2) }), "x.pth", { key: "nope" }),
    "--key nope: the file holds no such top-level key",
  );
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("pth: truncated, corrupted and incomplete zips are exit 2, one message, no stack trace", async () => {
  const good = await Deno.readFile(FIXTURE);
  await withTmp("lvit-pth-", async (dir) => {
    const write = async (name: string, bytes: Uint8Array) => {
      const p = join(dir, name);
      await Deno.writeFile(p, bytes);
      return p;
    };
    // Cut in half: the end record is gone.
    const half = await write("half.pth", good.slice(0, good.length >> 1));
    assertRefused(await convert(half), half, "no end-of-central-directory record (truncated?)");
    // The end record points the directory one byte off.
    const off = good.slice();
    const dv = new DataView(off.buffer);
    dv.setUint32(off.length - 6, dv.getUint32(off.length - 6, true) + 1, true);
    const moved = await write("moved.pth", off);
    assertRefused(await convert(moved), moved, "zip directory entry 0 is damaged");
    // Storages cut out: the end record is kept, the entries run past the data.
    const cut = await write(
      "cut.pth",
      new Uint8Array([...good.subarray(0, 3000), ...good.subarray(good.length - 22)]),
    );
    assertRefused(await convert(cut), cut, "does not fit before its end record");
    // One byte flipped inside a storage (arange(20.), the view's base): its CRC-32 fails.
    const at = indexOf(good, f32(1, 2, 3, 4));
    assert(at > 0, "storage bytes not found in the fixture");
    const flipped = good.slice();
    flipped[at + 5] ^= 0x40;
    const crc = await write("crc.pth", flipped);
    assertRefused(await convert(crc), crc, "fails its CRC-32 check", "the file is damaged");
    // A zip without data.pkl; one with compressed entries; not a zip; empty; a folder.
    const noPkl = await write(
      "nopkl.pth",
      zipSync({
        "a/version": [enc.encode("3\n"), { level: 0 }],
        "a/data/0": [f32(1), { level: 0 }],
      }),
    );
    assertRefused(await convert(noPkl), noPkl, "without <archive>/data.pkl");
    const deflated = await write("deflated.pth", pthZip(new Pk().op(0x4e).stop(), {}, 6));
    assertRefused(await convert(deflated), deflated, "is compressed (method 8)");
    const text = await write("text.pth", enc.encode("hello, not a checkpoint"));
    assertRefused(await convert(text), text, "not a PyTorch checkpoint");
    const empty = await write("empty.pth", new Uint8Array(0));
    assertRefused(await convert(empty), empty, "not a PyTorch checkpoint");
    assertRefused(await convert(dir), dir, "is a folder, not a regular file");
    assertRefused(await convert(join(dir, "none.pth")), "none.pth", "file not found");
    // The size bound applies before reading.
    await expectRejection(
      "size",
      PthError,
      () => readPthBytes(FIXTURE, 1000),
      FIXTURE,
      "more than the 1000 bytes",
    );
  });
});

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let k = 0; k < needle.length; k++) if (hay[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("safetensors: raw tensors of every dtype are written with their bytes unchanged", () => {
  const t = new Map([
    ["h", { dtype: "F16" as const, shape: [2], bytes: new Uint8Array([1, 2, 3, 4]) }],
    ["b", { dtype: "BOOL" as const, shape: [3], bytes: new Uint8Array([1, 0, 1]) }],
    ["l", { dtype: "I64" as const, shape: [], bytes: new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]) }],
    ["f", { shape: [1], data: Float32Array.of(0.5) }],
  ]);
  const raw = rawSafetensors(encodeSafetensors(t, { k: "v" }));
  assertEquals(raw.tensors, [
    ["h", "F16", [2], "01020304"],
    ["b", "BOOL", [3], "010001"],
    ["l", "I64", [], "0908070605040302"],
    ["f", "F32", [1], "0000003f"],
  ]);
  expectError(
    "size",
    Error,
    () =>
      encodeSafetensors(
        new Map([["x", { dtype: "I32" as const, shape: [2], bytes: new Uint8Array(4) }]]),
      ),
    "x: shape [2] I32 but 4 bytes",
  );
});

// ---------------------------------------------------------------------------------------------
// Generated by PyTorch here.

/** Runs tests/fixtures/pth_gen.py into `dir`; returns its expected.json. */
async function generate(dir: string): Promise<Record<string, Expected> & { torch: string }> {
  const r = await new Deno.Command(PYTHON, {
    args: [join(ROOT, "tests/fixtures/pth_gen.py"), dir],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (r.code !== 0) throw new Error(`pth_gen.py failed:\n${new TextDecoder().decode(r.stderr)}`);
  return JSON.parse(await Deno.readTextFile(join(dir, "expected.json")));
}

Deno.test({
  name: `pth (${TORCH}): state_dicts, wrappers, DataParallel, dtypes, views: bit-exact`,
  ignore: NO_TORCH !== null,
  fn: async () => {
    await withTmp("lvit-pth-", async (dir) => {
      const expected = await generate(dir);
      const files = Object.keys(expected).filter((k) => k.endsWith(".pth"));
      assertEquals(files.sort(), [
        "dataparallel.pth",
        "mixed.pth",
        "params.pth",
        "plain.pth",
        "protocol4.pth",
        "wrapped.pth",
      ]);
      let total = 0, bytes = 0;
      for (const name of files) {
        const file = join(dir, name);
        const want = expected[name];
        const { sd, tensors } = converted(await Deno.readFile(file), file);
        assertEquals(tensors, want.tensors);
        assertEquals([sd.key, sd.strippedPrefix], [want.key, want.stripped]);
        total += tensors.length;
        bytes += want.tensors.reduce((a, t) => a + t[3].length / 2, 0);
      }
      // Through the CLI too, for the wrapped DataParallel file and every dtype.
      for (const name of ["dataparallel.pth", "mixed.pth"]) {
        const file = join(dir, name), out = join(dir, `${name}.safetensors`);
        const r = await convert(file, "--out", out);
        assert(r.code === 0, r.text);
        const raw = rawSafetensors(await Deno.readFile(out));
        assertEquals(raw.tensors, expected[name].tensors);
        assertEquals(raw.meta.source_sha256, await sha256File(file));
      }
      const dp = await convert(join(dir, "dataparallel.pth"), "--out", join(dir, "dp.safetensors"));
      assert(
        dp.text.includes('optimizer: dict of 2 entries; epoch: int 5; note: str "dp"'),
        dp.text,
      );
      console.log(
        `PyTorch ${expected.torch}: ${files.length} files, ${total} tensors, ${bytes} bytes ` +
          `bit-exact (10 dtypes, offset/transposed/expanded/strided views, Parameters, protocol 4)`,
      );
    });
  },
});

Deno.test({
  name: `pth (${TORCH}): live exploits, nn.Module, TorchScript, legacy, no data.pkl: exit 2`,
  ignore: NO_TORCH !== null,
  fn: async () => {
    await withTmp("lvit-pth-", async (dir) => {
      await generate(dir);
      const f = (n: string) => join(dir, n);
      assertRefused(
        await convert(f("evil_system.pth")),
        f("evil_system.pth"),
        "refused global posix.system",
      );
      assertRefused(
        await convert(f("evil_eval.pth")),
        f("evil_eval.pth"),
        "refused global __builtin__.eval",
      );
      assertRefused(
        await convert(f("whole_module.pth")),
        f("whole_module.pth"),
        "refused global torch.nn.modules.linear.Linear",
        "torch.save(model.state_dict(), path)",
      );
      assertRefused(await convert(f("legacy.pth")), f("legacy.pth"), "legacy format (torch < 1.6");
      assertRefused(await convert(f("script.pt")), f("script.pt"), "a TorchScript archive");
      assertRefused(
        await convert(f("no_pickle.pth")),
        f("no_pickle.pth"),
        "without <archive>/data.pkl",
      );
      assert(
        !(await exists(f("PWNED_system"))) && !(await exists(f("PWNED_eval"))),
        "a payload ran",
      );
      assert(!(await exists(f("evil_system.safetensors"))), "an output was written");
      // The payloads are live: torch.load (1.13, weights_only off by default) runs both.
      for (const n of ["evil_system.pth", "evil_eval.pth"]) {
        await new Deno.Command(PYTHON, {
          args: ["-c", `import torch; torch.load(${JSON.stringify(f(n))})`],
        })
          .output();
      }
      assert(
        await exists(f("PWNED_system")) && await exists(f("PWNED_eval")),
        "the payloads are not live",
      );
    });
  },
});

Deno.test("pth: checkpoint loading and model.init_from read the committed .pth directly", async () => {
  const bytes = await Deno.readFile(FIXTURE);
  const sha = sha256Hex(bytes);
  const ref = decodeSafetensors(
    pthToSafetensors(decodePth(bytes, FIXTURE), { file: FIXTURE, sha256: sha }),
  ).tensors;
  const shapes = new Map([...ref].map(([n, t]) => [n, t.shape]));
  // loadCheckpoint (eval, resume): every tensor, the same f32 values as the converted file.
  const r = await loadCheckpoint(FIXTURE, shapes);
  assertEquals([...r.values.keys()], [...ref.keys()]);
  for (const [n, t] of ref) assertEquals(r.values.get(n), t.data);
  assertEquals([r.metadata.get("source_sha256"), r.metadata.get("source_key")], [
    sha,
    "state_dict",
  ]);
  // init_from: the sha256 is the .pth's; what fits is taken, the rest reported.
  const src = await readInitSource(FIXTURE);
  assertEquals([src.file, src.sha256], [FIXTURE, sha]);
  const { values, report } = matchInit(
    src,
    new Map([["0.weight", [2, 1, 3, 3]], ["1.running_var", [2]], ["half", [4]], ["new", [3]]]),
  );
  assertEquals([...values.keys()], ["0.weight", "1.running_var"]);
  assertEquals(values.get("1.running_var"), ref.get("1.running_var")!.data);
  assertEquals(report.shape_mismatch, [{ name: "half", checkpoint: [3], model: [4] }]);
  assertEquals(report.left_initialised, ["half", "new"]);
  assertEquals(report.checkpoint_metadata.source, "tiny_state_dict.pth");
});

Deno.test({
  name: `pth (${TORCH}): model.init_from takes an official-layout .pth of a U-Net into LViT-T`,
  ignore: NO_TORCH !== null,
  fn: async () => {
    await withTmp("lvit-pth-", async (dir) => {
      const be = await selectBackend("cpu", true);
      const o = { batch: 1, channels: 3, height: 64, width: 64 };
      const unet = await Session.create(be, buildModel("unet", { baseChannels: 8 }), {
        ...o,
        seed: 1,
      });
      // Values no initialisation produces, so a copied tensor is told apart.
      const ck = new Map<string, OutTensor>();
      for (const [n, t] of await unet.state(true)) {
        ck.set(n, { ...t, data: t.data.map((v) => t.dtype === "I64" ? 7 : 1.5 * v + 0.25) });
      }
      unet.destroy();
      const st = join(dir, "unet.safetensors"), pth = join(dir, "unet.pth");
      await saveCheckpoint(st, ck);
      const py = await new Deno.Command(PYTHON, {
        args: [join(ROOT, "tests/fixtures/pth_gen.py"), "--from-safetensors", st, pth],
        stderr: "piped",
      }).output();
      assert(py.code === 0, new TextDecoder().decode(py.stderr));

      const init = async (file: string) => {
        const lvit = await Session.create(
          be,
          buildModel("lvit-t", { baseChannels: 8, imageSize: 64 }),
          { ...o, seed: 2 },
        );
        const rep = await initSession(lvit, await readInitSource(file), dir, () => {});
        const state = await lvit.state(true);
        lvit.destroy();
        return { rep, state };
      };
      const a = await init(st), b = await init(pth);
      assert(a.rep.transferred.length > 100, `${a.rep.transferred.length} transferred`);
      assertEquals(b.rep.transferred, a.rep.transferred);
      assertEquals(b.rep.left_initialised, a.rep.left_initialised);
      assertEquals(b.rep.not_in_model, a.rep.not_in_model);
      assertEquals(b.rep.sha256, sha256Hex(await Deno.readFile(pth)));
      assertEquals(b.rep.checkpoint_metadata.stripped_prefix, "module.");
      for (const n of b.rep.transferred) {
        const x = b.state.get(n)!.data, y = ck.get(n)!.data;
        assert(x.length === y.length && x.every((v, i) => Object.is(v, y[i])), `${n} differs`);
      }
      // Everything else is the same seeded initialisation either way.
      for (const [n, t] of a.state) {
        const x = b.state.get(n)!.data;
        assert(x.every((v, i) => Object.is(v, t.data[i])), `${n} differs between the two`);
      }
      console.log(
        `init_from .pth: ${b.rep.transferred.length} of ${b.rep.model_tensors} LViT-T tensors ` +
          `from a U-Net .pth ({epoch, state_dict with module., optimizer}), bitwise as its safetensors`,
      );
    });
  },
});

Deno.test({
  name: `pth (${TORCH}): eval --checkpoint x.pth scores as the run's own checkpoint`,
  ignore: NO_TORCH !== null,
  fn: async () => {
    await withTmp("lvit-pth-", async (dir) => {
      const text = [
        "name: tiny",
        "seed: 5",
        "backend: cpu",
        `data: { dataset: synth, synth: { train: 8, val: 4, test: 4 }, cache_dir: ${
          join(dir, "cache")
        } }`,
        "model: { name: unet-small, widths: [4, 8], image_size: 32 }",
        "train: { epochs: 2, batch: 2, lr: 0.01, min_save_epoch: 1 }",
      ].join("\n");
      const quiet = { progress: false, signals: false, log: () => {} };
      const r = await runExperiment(resolveExperimentText(join(dir, "e.yaml"), text), {
        ...quiet,
        out: join(dir, "runs"),
      });
      const best = join(r.dir, "checkpoints", "best.safetensors");
      const pth = join(dir, "best.pth");
      const py = await new Deno.Command(PYTHON, {
        args: [join(ROOT, "tests/fixtures/pth_gen.py"), "--from-safetensors", best, pth],
        stderr: "piped",
      }).output();
      assert(py.code === 0, new TextDecoder().decode(py.stderr));
      const own = await evaluate(r.dir, { log: () => {}, predictions: false });
      const other = await evaluate(r.dir, { log: () => {}, predictions: false, checkpoint: pth });
      assertEquals([other.dice, other.iou, other.pooled], [own.dice, own.iou, own.pooled]);
      assertEquals(other.checkpoint, pth);
      // A refused .pth is exit 2 from eval too.
      const evil = join(dir, "evil.pth");
      await Deno.writeFile(
        evil,
        pthZip(new Pk().global("posix", "system").str("true").op(0x85).reduce().stop()),
      );
      const e = await denoRun([join(ROOT, "lib/cli/eval.ts"), r.dir, "--checkpoint", evil]);
      assertRefused(e, evil, "refused global posix.system");
      console.log(`eval --checkpoint .pth: dice ${other.dice} = ${own.dice} (best.safetensors)`);
    });
  },
});
