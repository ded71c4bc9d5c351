import {
  applyAugment,
  augmentSample,
  drawAugment,
  rot90FlipInto,
  rotateNearestInto,
} from "../lib/data/augment.ts";
import {
  basicTokenize,
  BUILTIN_ENCODER_ID,
  builtinTokens,
  encodeBuiltin,
  prepareText,
  readTextPadding,
} from "../lib/data/text_builtin.ts";
import { cacheKey, getOrCompute } from "../lib/data/text_cache.ts";
import { assert, assertEquals, expectError } from "./assert.ts";

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

/** Plane of n x m with distinct small integer values (exact in f32). */
function ramp(c: number, h: number, w: number): Float32Array {
  return Float32Array.from({ length: c * h * w }, (_, i) => i + 1);
}

// ---- augmentation ----

Deno.test("rot90/flip match numpy on a 2x3 image", () => {
  // x = [[1,2,3],[4,5,6]]; expected values written out from np.flip(np.rot90(x, k), axis).
  const x = ramp(1, 2, 3);
  const cases: [number, 0 | 1, number[]][] = [
    [0, 0, [4, 5, 6, 1, 2, 3]],
    [0, 1, [3, 2, 1, 6, 5, 4]],
    [1, 0, [1, 4, 2, 5, 3, 6]], // rot90 = [[3,6],[2,5],[1,4]]
    [1, 1, [6, 3, 5, 2, 4, 1]],
    [2, 0, [3, 2, 1, 6, 5, 4]], // rot180 = [[6,5,4],[3,2,1]]
    [2, 1, [4, 5, 6, 1, 2, 3]],
    [3, 0, [6, 3, 5, 2, 4, 1]], // rot270 = [[4,1],[5,2],[6,3]]
    [3, 1, [1, 4, 2, 5, 3, 6]],
  ];
  const out = new Float32Array(6);
  for (const [k, axis, want] of cases) {
    rot90FlipInto(x, out, 1, 2, 3, k, axis);
    assertEquals(Array.from(out), want);
  }
});

Deno.test("rot90/flip moves every channel the same way", () => {
  const x = ramp(3, 4, 4), out = new Float32Array(48), one = new Float32Array(16);
  rot90FlipInto(x, out, 3, 4, 4, 3, 1);
  for (let c = 0; c < 3; c++) {
    rot90FlipInto(x.slice(c * 16, c * 16 + 16), one, 1, 4, 4, 3, 1);
    assertEquals(out.subarray(c * 16, c * 16 + 16), one);
  }
});

Deno.test("rotate by 90 equals rot90 on odd square sizes; 0 is the identity", () => {
  for (const n of [1, 3, 5, 7]) {
    const x = ramp(2, n, n);
    const a = new Float32Array(x.length), b = new Float32Array(x.length);
    const flip = new Float32Array(x.length);
    rotateNearestInto(x, a, 2, n, n, 90);
    // rot90 alone = flip(rot90(x, 1), 0) then flip back along axis 0.
    rot90FlipInto(x, flip, 2, n, n, 1, 0);
    rot90FlipInto(flip, b, 2, n, n, 0, 0);
    assertEquals(a, b);
    rotateNearestInto(x, a, 2, n, n, 0);
    assertEquals(a, x);
  }
  // 0 degrees is also exact for even sizes (half-pixel centre).
  const y = ramp(3, 6, 4), c = new Float32Array(y.length);
  rotateNearestInto(y, c, 3, 6, 4, 0);
  assertEquals(c, y);
});

Deno.test("rotate fills outside with 0 and keeps the centre", () => {
  const n = 9, x = new Float32Array(n * n).fill(1), out = new Float32Array(n * n);
  rotateNearestInto(x, out, 1, n, n, 20);
  assert(out[0] === 0 && out[n * n - 1] === 0, "corners come from outside");
  assert(out[4 * n + 4] === 1, "centre stays");
  const v = ramp(1, n, n);
  rotateNearestInto(v, out, 1, n, n, -17);
  assertEquals(out[4 * n + 4], v[4 * n + 4]);
});

Deno.test("rotate matches scipy.ndimage.rotate(order=0, reshape=False) on 7x7 by -17", () => {
  // np.arange(1, 50).reshape(7, 7) through scipy 'ndimage.rotate(y, -17, order=0, reshape=False)'.
  const want = [
    0,
    8,
    2,
    3,
    0,
    0,
    0,
    0,
    16,
    9,
    10,
    11,
    12,
    6,
    0,
    23,
    17,
    18,
    19,
    13,
    14,
    29,
    30,
    24,
    25,
    26,
    20,
    21,
    36,
    37,
    31,
    32,
    33,
    27,
    0,
    44,
    38,
    39,
    40,
    41,
    34,
    0,
    0,
    0,
    0,
    47,
    48,
    42,
    0,
  ];
  const out = new Float32Array(49);
  rotateNearestInto(ramp(1, 7, 7), out, 1, 7, 7, -17);
  assertEquals(Array.from(out), want);
});

Deno.test("masks stay binary and image/mask get the same transform", () => {
  const h = 16, w = 16;
  const mask = Float32Array.from({ length: h * w }, (_, i) => ((i * 7919) % 5 === 0 ? 1 : 0));
  const image = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) image.set(mask, c * h * w);
  const oi = new Float32Array(image.length), om = new Float32Array(mask.length);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const op = augmentSample(7, 2, i, image, mask, 3, h, w, oi, om);
    seen.add(op.kind);
    assert(om.every((v) => v === 0 || v === 1), "mask not binary");
    for (let c = 0; c < 3; c++) assertEquals(oi.subarray(c * h * w, (c + 1) * h * w), om);
  }
  assertEquals([...seen].sort(), ["none", "rotate", "rotflip"]);
});

Deno.test("draws are a pure function of (seed, epoch, index) with 0.5/0.25/0.25 branches", () => {
  assertEquals(drawAugment(3, 1, 12345), drawAugment(3, 1, 12345));
  const a = Array.from({ length: 64 }, (_, i) => JSON.stringify(drawAugment(3, 1, i)));
  // Reverse order gives the same draws: no hidden state.
  const b = Array.from({ length: 64 }, (_, i) => JSON.stringify(drawAugment(3, 1, 63 - i)))
    .reverse();
  assertEquals(a, b);
  const otherEpoch = Array.from({ length: 64 }, (_, i) => JSON.stringify(drawAugment(3, 2, i)));
  const otherSeed = Array.from({ length: 64 }, (_, i) => JSON.stringify(drawAugment(4, 1, i)));
  assert(a.join() !== otherEpoch.join() && a.join() !== otherSeed.join());

  const n = 4000, count = { none: 0, rotate: 0, rotflip: 0 };
  const ks = [0, 0, 0, 0], axes = [0, 0], angles = new Set<number>();
  for (let i = 0; i < n; i++) {
    const op = drawAugment(11, 0, i);
    count[op.kind]++;
    if (op.kind === "rotflip") ks[op.k]++, axes[op.axis]++;
    if (op.kind === "rotate") {
      assert(Number.isInteger(op.angle) && op.angle >= -20 && op.angle <= 19);
      angles.add(op.angle);
    }
  }
  // 4 standard deviations: sqrt(4000 * 0.25 * 0.75) ~ 27, sqrt(4000 * 0.25) ~ 32.
  assert(Math.abs(count.rotflip - 2000) < 130, `rotflip ${count.rotflip}`);
  assert(Math.abs(count.rotate - 1000) < 110, `rotate ${count.rotate}`);
  assert(Math.abs(count.none - 1000) < 110, `none ${count.none}`);
  for (const k of ks) assert(Math.abs(k - count.rotflip / 4) < 100, `k counts ${ks}`);
  assert(Math.abs(axes[0] - axes[1]) < 200, `axis counts ${axes}`);
  assertEquals(angles.size, 40);
});

Deno.test("applyAugment 'none' copies and checks sizes", () => {
  const x = ramp(2, 3, 3), m = new Float32Array(9).fill(1);
  const oi = new Float32Array(18), om = new Float32Array(9);
  applyAugment({ kind: "none" }, x, m, 2, 3, 3, oi, om);
  assertEquals(oi, x);
  assertEquals(om, m);
  expectError(
    "size mismatch must throw",
    RangeError,
    () => applyAugment({ kind: "rotate", angle: 5 }, x, m, 2, 3, 3, new Float32Array(17), om),
  );
});

// ---- builtin text encoder ----

Deno.test("read_text padding and tokens of the reference examples", () => {
  const monuseg = "The nuclei are sparsely distributed.";
  assertEquals(readTextPadding(monuseg), monuseg + " EOF XXX EOF XXX EOF XXX EOF XXX");
  assertEquals(
    builtinTokens(monuseg).join(" "),
    "the nuclei are sparsely distributed . eof xxx eof xxx",
  );
  const qata = "Unilateral pulmonary infection, one infected area, middle lower left lung.";
  assertEquals(readTextPadding(qata), qata); // 10 words: no padding
  assertEquals(
    builtinTokens(qata).join(" "),
    "unilateral pulmonary infection , one infected area , middle lower",
  );
  // Padding counts the whole text, then only the first line is kept.
  assertEquals(prepareText("Left lung.\nSecond line here"), "Left lung.");
  assertEquals(readTextPadding("").split("EOF").length - 1, 9);
});

Deno.test("basic tokenizer: lowercase, accents, punctuation, control characters", () => {
  assertEquals(basicTokenize("  Héllo,World!  a-b\t$5 \u0000x"), [
    "hello",
    ",",
    "world",
    "!",
    "a",
    "-",
    "b",
    "$",
    "5",
    "x",
  ]);
});

Deno.test("builtin embedding: shape, determinism, word identity, options", () => {
  const text = "The nuclei are sparsely distributed.";
  const a = encodeBuiltin(text), b = encodeBuiltin(text);
  assertEquals(a.length, 10 * 768);
  assert(bitsEqual(a, b), "not deterministic");
  const row = (x: Float32Array, i: number, d = 768) => x.subarray(i * d, (i + 1) * d);
  // "eof" at rows 6 and 8, "xxx" at rows 7 and 9.
  assertEquals(row(a, 6), row(a, 8));
  assertEquals(row(a, 7), row(a, 9));
  let dot = 0, norm = 0;
  for (let j = 0; j < 768; j++) dot += row(a, 0)[j] * row(a, 1)[j], norm += row(a, 0)[j] ** 2;
  assert(Math.abs(norm - 1) < 0.2, `norm ${norm}`);
  assert(Math.abs(dot) < 0.2, `different words too similar: ${dot}`);
  // Same word in another text gives the same vector (no context).
  assertEquals(row(encodeBuiltin("nuclei"), 0), row(a, 1));
  assert(!bitsEqual(encodeBuiltin("The nuclei are dense."), a));
  assert(!bitsEqual(encodeBuiltin(text, { seed: 1 }), a));

  const small = encodeBuiltin("One two", { maxTokens: 14, dim: 8 });
  assertEquals(small.length, 14 * 8);
  // "one two" + 7 x "eof xxx" = 16 tokens, cut to 14: no zero rows.
  assert(row(small, 13, 8).some((v) => v !== 0));
  const short = encodeBuiltin("a b c d e f g h i", { maxTokens: 12, dim: 4 });
  assert(row(short, 8, 4).some((v) => v !== 0));
  assert(row(short, 9, 4).every((v) => v === 0), "rows after the last token are zero");
  assert(BUILTIN_ENCODER_ID.length > 0);
});

// ---- text cache ----

Deno.test("text cache: compute once, read back bitwise, recompute corrupt files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "text_cache_test_" });
  try {
    const parts = [BUILTIN_ENCODER_ID, 10, 768, "The nuclei are sparsely distributed."];
    let calls = 0;
    const compute = () => {
      calls++;
      return encodeBuiltin(parts[3] as string);
    };
    const first = await getOrCompute(dir, parts, compute, { expectedLength: 7680 });
    const second = await getOrCompute(dir, parts, compute, { expectedLength: 7680 });
    assertEquals(calls, 1);
    assert(bitsEqual(first, second), "read back differs");
    assert(bitsEqual(second, encodeBuiltin(parts[3] as string)));

    const path = `${dir}/${await cacheKey(parts)}.f32`;
    const files = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(files, [path.slice(dir.length + 1)]); // no temp files left behind

    // Flip one payload byte: the checksum catches it.
    const bytes = await Deno.readFile(path);
    bytes[100] ^= 0xff;
    await Deno.writeFile(path, bytes);
    const third = await getOrCompute(dir, parts, compute);
    assertEquals(calls, 2);
    assert(bitsEqual(third, first));

    // Truncated file and garbage file.
    await Deno.writeFile(path, (await Deno.readFile(path)).subarray(0, 50));
    assert(bitsEqual(await getOrCompute(dir, parts, compute), first));
    await Deno.writeFile(path, new Uint8Array([1, 2, 3]));
    assert(bitsEqual(await getOrCompute(dir, parts, compute), first));
    assertEquals(calls, 4);

    // An intact file of the wrong length for the caller is recomputed.
    const other = ["k"];
    await getOrCompute(dir, other, () => new Float32Array(3).fill(2));
    const got = await getOrCompute(dir, other, () => new Float32Array(5).fill(1), {
      expectedLength: 5,
    });
    assertEquals(got, new Float32Array(5).fill(1));

    // Distinct key parts give distinct keys, and NaN bits survive.
    assert((await cacheKey(["ab", "c"])) !== (await cacheKey(["a", "bc"])));
    const odd = new Float32Array(2);
    new Uint32Array(odd.buffer).set([0x7fc00123, 0x80000000]);
    await getOrCompute(dir, ["nan"], () => odd);
    const back = await getOrCompute(dir, ["nan"], () => new Float32Array(2));
    assert(bitsEqual(back, odd), "bits not preserved");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
