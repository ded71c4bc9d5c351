/** safetensors and checkpoints: round trips, the format's details, and hostile files. */
import { decodeSafetensors, encodeSafetensors, SafetensorsError } from "../lib/io/safetensors.ts";
import { CheckpointError, matchStateDict, saveCheckpoint } from "../lib/io/checkpoint.ts";
import { assertClose } from "./harness.ts";
import { assertEquals } from "./assert.ts";

const enc = new TextEncoder();

/** Builds a file by hand, the way another writer would: header JSON text + raw bytes. */
function rawFile(header: string, data: Uint8Array): Uint8Array {
  const hb = enc.encode(header);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

function expectBad(bytes: Uint8Array, needle: string) {
  try {
    decodeSafetensors(bytes, "x.safetensors");
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw new Error(`wrong error type: ${e}`);
    if (!e.message.includes(needle)) throw new Error(`message '${e.message}' lacks '${needle}'`);
    return;
  }
  throw new Error(`accepted a bad file (${needle})`);
}

Deno.test("safetensors: bitwise f32 round trip with metadata, 8-byte aligned data", () => {
  const t = new Map([
    ["conv.weight", { shape: [2, 3, 1, 1], data: Float32Array.from([1, -2, 3.5, 1e-30, -0, 7]) }],
    ["conv.bias", { shape: [2], data: Float32Array.from([0.25, -9]) }],
    ["empty", { shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const bytes = encodeSafetensors(t, { format: "pt" });
  const hl = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  if ((8 + hl) % 8) throw new Error("data does not start 8-byte aligned");
  const { tensors, metadata } = decodeSafetensors(bytes);
  if (metadata.get("format") !== "pt") throw new Error("metadata lost");
  for (const [k, v] of t) {
    const got = tensors.get(k)!;
    if (got.shape.join() !== v.shape.join()) throw new Error(`${k} shape`);
    // Bitwise: -0, tiny and odd values come back with the same bits.
    const a = new Uint32Array(got.data.buffer, got.data.byteOffset, got.data.length);
    const b = new Uint32Array(v.data.buffer, v.data.byteOffset, v.data.length);
    if (a.some((w, i) => w !== b[i])) throw new Error(`${k}: bits differ after the round trip`);
  }
});

Deno.test("safetensors: reads F16, BF16, F64, I64 and U8 written by another writer", () => {
  const data = new Uint8Array(2 + 2 + 8 + 8 + 1);
  const dv = new DataView(data.buffer);
  dv.setUint16(0, 0x3c00, true); // f16 1.0
  dv.setUint16(2, 0xc040, true); // bf16 -3.0
  dv.setFloat64(4, 0.1, true);
  dv.setBigInt64(12, 123456789n, true);
  dv.setUint8(20, 200);
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [1], data_offsets: [0, 2] },
    b: { dtype: "BF16", shape: [1], data_offsets: [2, 4] },
    d: { dtype: "F64", shape: [], data_offsets: [4, 12] },
    n: { dtype: "I64", shape: [1], data_offsets: [12, 20] },
    u: { dtype: "U8", shape: [1, 1], data_offsets: [20, 21] },
  });
  const { tensors } = decodeSafetensors(rawFile(header, data));
  const v = (k: string) => tensors.get(k)!.data[0];
  assertClose(
    "values",
    [v("h"), v("b"), v("d"), v("n"), v("u")],
    [1, -3, Math.fround(0.1), Math.fround(123456789), 200],
    0,
    0,
  );
});

Deno.test("safetensors: hostile files fail with SafetensorsError and a reason", () => {
  const ok = JSON.stringify({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
  const eight = new Uint8Array(8);
  expectBad(new Uint8Array(3), "shorter");
  const huge = rawFile(ok, eight);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 62n, true);
  expectBad(huge, "header length");
  expectBad(rawFile("{not json", eight), "JSON");
  expectBad(rawFile("[1,2]", eight), "not a JSON object");
  expectBad(rawFile(ok.replace("F32", "Q8"), eight), "dtype");
  expectBad(rawFile(ok.replace("[2]", "[-2]"), eight), "shape");
  expectBad(
    rawFile(ok.replace("[0, 8]", "[0, 9]").replace("[0,8]", "[0,9]"), eight),
    "data_offsets",
  );
  expectBad(rawFile(ok.replace("[0,8]", "[0,4]"), eight), "needs 8 bytes");
  expectBad(rawFile(ok, new Uint8Array(12)), "trailing");
  const two = JSON.stringify({
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
  });
  expectBad(rawFile(two, eight), "overlaps");
  expectBad(rawFile(JSON.stringify({ __metadata__: { x: 1 } }), new Uint8Array(0)), "metadata");
});

Deno.test("safetensors: a __proto__ tensor name cannot pollute prototypes", () => {
  const header = '{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
    '"constructor":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
  const { tensors } = decodeSafetensors(rawFile(header, new Uint8Array(8)));
  if (!tensors.has("__proto__") || !tensors.has("constructor")) throw new Error("names lost");
  // deno-lint-ignore no-explicit-any
  if (({} as any).dtype !== undefined || ({} as any).shape !== undefined) {
    throw new Error("Object.prototype was polluted");
  }
});

Deno.test("safetensors: random corruption of a valid file never escapes as another error", () => {
  const t = new Map([["w", { shape: [3, 4], data: new Float32Array(12).fill(0.5) }]]);
  const good = encodeSafetensors(t);
  let state = 12345;
  const rnd = () => (state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let trial = 0; trial < 3000; trial++) {
    const b = good.slice(0, trial % 7 === 0 ? Math.floor(rnd() * good.length) : good.length);
    for (let k = 0; k < 3; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    try {
      decodeSafetensors(b);
    } catch (e) {
      if (!(e instanceof SafetensorsError)) throw new Error(`trial ${trial}: ${e}`);
    }
  }
});

Deno.test("checkpoints: module. prefixes and thop buffers, missing/unexpected keys by name", () => {
  const file = encodeSafetensors(
    new Map([
      ["module.inc.conv.weight", { shape: [2, 1], data: Float32Array.from([1, 2]) }],
      ["module.inc.total_ops", { shape: [1], data: Float32Array.from([9]) }],
      ["total_params", { shape: [1], data: Float32Array.from([9]) }],
      ["module.extra.bias", { shape: [1], data: Float32Array.from([3]) }],
    ]),
  );
  const expected = new Map<string, readonly number[]>([
    ["inc.conv.weight", [2, 1]],
    ["inc.conv.bias", [2]],
  ]);
  try {
    matchStateDict("ck.safetensors", file, expected);
    throw new Error("a mismatched checkpoint loaded");
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    for (const needle of ["missing keys: inc.conv.bias", "unexpected keys: module.extra.bias"]) {
      if (!e.message.includes(needle)) throw new Error(`'${e.message}' lacks '${needle}'`);
    }
  }
  const r = matchStateDict("ck.safetensors", file, expected, {
    allowMissing: true,
    allowUnexpected: true,
  });
  assertClose("weight", r.values.get("inc.conv.weight")!, [1, 2], 0, 0);
  if (r.ignored.length !== 2 || r.missing[0] !== "inc.conv.bias") throw new Error("report wrong");
  // `skip` leaves named keys out as known (a resumable checkpoint's trainer state), after the
  // module. prefix is dropped; other unexpected keys still fail.
  const skipped = matchStateDict("ck.safetensors", file, expected, {
    allowMissing: true,
    skip: (n) => n.startsWith("extra."),
  });
  if (skipped.ignored.join() !== "module.inc.total_ops,total_params,module.extra.bias") {
    throw new Error(`skip: ignored ${skipped.ignored}`);
  }
  try {
    matchStateDict("ck.safetensors", file, expected, { allowMissing: true, skip: () => false });
    throw new Error("an unexpected key loaded");
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
  }
  const bad = new Map<string, readonly number[]>([["inc.conv.weight", [1, 2]]]);
  try {
    matchStateDict("ck.safetensors", file, bad, { allowUnexpected: true });
    throw new Error("a wrong shape loaded");
  } catch (e) {
    if (!(e instanceof CheckpointError) || !e.message.includes("shape [2, 1] in the file")) throw e;
  }
});

Deno.test("checkpoints: saveCheckpoint streams exactly encodeSafetensors' bytes", async () => {
  // A tensor over the writer's 8 MiB staging buffer (it spans three stagings), one in a
  // SharedArrayBuffer (the CPU backend's leaves with helper threads), many small ones that
  // coalesce, an int64 counter, and an odd length, so staging boundaries fall mid-tensor.
  const big = Float32Array.from({ length: 5_000_003 }, (_, i) => Math.sin(i) * 1e3);
  const shared = new Float32Array(new SharedArrayBuffer(4 * 1000));
  shared.forEach((_, i) => shared[i] = i / 7);
  const t = new Map<string, { shape: number[]; data: Float32Array; dtype?: "F32" | "I64" }>([
    ["big", { shape: [5_000_003], data: big }],
    ["shared", { shape: [10, 100], data: shared }],
    ["bn.num_batches_tracked", { shape: [], data: new Float32Array([41]), dtype: "I64" }],
  ]);
  for (let k = 0; k < 300; k++) {
    t.set(`small.${k}`, { shape: [k % 5 + 1], data: new Float32Array(k % 5 + 1).fill(k) });
  }
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/c.safetensors`;
    await saveCheckpoint(file, t, { epoch: "3" });
    const got = await Deno.readFile(file);
    const want = encodeSafetensors(t, { epoch: "3" });
    if (got.length !== want.length) throw new Error(`${got.length} bytes, want ${want.length}`);
    const at = got.findIndex((b, i) => b !== want[i]);
    if (at !== -1) throw new Error(`byte ${at} differs`);
    const back = decodeSafetensors(got).tensors;
    if (back.get("big")!.data[4_999_999] !== big[4_999_999]) throw new Error("big: wrong value");
    if (back.get("shared")!.data[999] !== shared[999]) throw new Error("shared: wrong value");
    if (back.get("bn.num_batches_tracked")!.dtype !== "I64") throw new Error("counter dtype");
    assertEquals((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), [
      "c.safetensors",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
