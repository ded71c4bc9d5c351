/**
 * The decoded-tensor cache (lib/data/dataset.ts) on a generated QaTa folder: reads are bitwise
 * equal to loadSample (cached and in-memory); a second open decodes nothing (proved by
 * corrupting every source file under an unchanged size and mtime and still reading the same
 * tensors); a truncated or damaged cache is rebuilt or repaired with a log line; a changed
 * source file or text gives a new fingerprint; bad reads fail cleanly.
 */
import { join } from "node:path";
import { encodePng } from "../lib/deps.ts";
import { datasetFingerprint, openDataset, type OpenedDataset } from "../lib/data/dataset.ts";
import { DataError } from "../lib/data/errors.ts";
import { listLvitDataset, loadSample, type Split, SPLITS } from "../lib/data/lvit_folder.ts";
import { generateSynth } from "../lib/data/synth.ts";
import { assert, expectRejection } from "./assert.ts";

const GEN = 64; // generated image side
const SIZE = 48; // opened at a non-integer scale, so the resize really interpolates

/** Bitwise equality of float32 arrays (so -0, NaN payloads and rounding all count). */
function assertBits(name: string, got: Float32Array, want: Float32Array): void {
  assert(got.length === want.length, `${name}: length ${got.length} != ${want.length}`);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < w.length; i++) {
    assert(g[i] === w[i], `${name}[${i}]: ${got[i]} != ${want[i]}`);
  }
}

/** A generated QaTa folder of 8 samples; one train image in colour and one sample 50x40. */
async function makeData(root: string): Promise<void> {
  await generateSynth({ out: root, train: 4, val: 2, test: 2, size: GEN });
  // Grey images alone would hide a channel-order bug: one colour image with distinct channels.
  const rgb = new Uint8Array(GEN * GEN * 3).map((_, i) => (i % 3) * 90 + ((i * 13) & 63));
  await Deno.writeFile(
    join(root, "Train_Folder/img/synth_00001.png"),
    encodePng({ width: GEN, height: GEN, channels: 3, data: rgb }),
  );
  const w = 50, h = 40;
  const img = new Uint8Array(w * h).map((_, i) => (i * 7) & 255);
  const mask = new Uint8Array(w * h).map((_, i) => (i % w > 20 && i % w < 30 ? 255 : 0));
  await Deno.writeFile(
    join(root, "Train_Folder/img/synth_00002.png"),
    encodePng({ width: w, height: h, channels: 1, data: img }),
  );
  await Deno.writeFile(
    join(root, "Train_Folder/labelcol/mask_synth_00002.png"),
    encodePng({ width: w, height: h, channels: 1, data: mask }),
  );
}

type Tensors = Record<Split, { images: Float32Array; masks: Float32Array }>;

/** loadSample over every split: the reference values. */
async function reference(root: string): Promise<Tensors> {
  const ds = await listLvitDataset("qata", root);
  const out = {} as Tensors;
  for (const split of SPLITS) {
    const s = ds.splits[split];
    const images = new Float32Array(s.length * 3 * SIZE * SIZE);
    const masks = new Float32Array(s.length * SIZE * SIZE);
    for (const [k, sample] of s.entries()) {
      const l = await loadSample(sample, SIZE);
      images.set(l.image, k * 3 * SIZE * SIZE);
      masks.set(l.mask, k * SIZE * SIZE);
    }
    out[split] = { images, masks };
  }
  return out;
}

/** Reads every sample of every split, in reverse order (so reads really seek), and compares. */
async function assertMatches(ds: OpenedDataset, want: Tensors, what: string): Promise<void> {
  for (const split of SPLITS) {
    const d = ds.splits[split];
    const order = Array.from({ length: d.n }, (_, i) => d.n - 1 - i);
    const images = new Float32Array(d.n * 3 * SIZE * SIZE);
    const masks = new Float32Array(d.n * SIZE * SIZE);
    await d.read(order, images, masks);
    const per = SIZE * SIZE;
    for (const [j, k] of order.entries()) {
      assertBits(
        `${what} ${split}[${k}] image`,
        images.subarray(j * 3 * per, (j + 1) * 3 * per),
        want[split].images.subarray(k * 3 * per, (k + 1) * 3 * per),
      );
      assertBits(
        `${what} ${split}[${k}] mask`,
        masks.subarray(j * per, (j + 1) * per),
        want[split].masks.subarray(k * per, (k + 1) * per),
      );
    }
  }
}

/** Every image and mask file of the folder. */
async function sourceFiles(root: string): Promise<string[]> {
  const ds = await listLvitDataset("qata", root);
  return SPLITS.flatMap((s) => ds.splits[s].flatMap((x) => [x.imagePath, x.maskPath]));
}

Deno.test("dataset cache: bitwise equal to loadSample; second open decodes nothing", async () => {
  const root = await Deno.makeTempDir({ prefix: "dscache_" });
  const cache = await Deno.makeTempDir({ prefix: "dscache_c_" });
  try {
    await makeData(root);
    const want = await reference(root);

    const log1: string[] = [];
    const ds1 = await openDataset("qata", root, SIZE, {
      cacheDir: cache,
      log: (l) => log1.push(l),
    });
    try {
      assert(/^[0-9a-f]{64}$/.test(ds1.fingerprint), ds1.fingerprint);
      assert(log1.filter((l) => l.startsWith("decoding ")).length >= 3, log1.join("\n"));
      assert(
        ds1.splits.train.n === 4 && ds1.splits.val.n === 2 && ds1.splits.test.n === 2,
        "counts",
      );
      assert(ds1.splits.val.keys[0] === "mask_synth_00004.png", `keys ${ds1.splits.val.keys}`);
      assert(ds1.splits.val.texts[0].endsWith("lung."), ds1.splits.val.texts[0]);
      await assertMatches(ds1, want, "first open");
    } finally {
      ds1.close();
    }
    const dir = join(cache, "decoded", `${ds1.fingerprint}-${SIZE}`);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert(names.sort().join(",") === "test.bin,train.bin,val.bin", `cache files ${names}`);
    const len = (await Deno.stat(join(dir, "train.bin"))).size;
    assert(len === 96 + 4 * 4 + 4 * 4 * SIZE * SIZE, `train.bin is ${len} bytes`);

    // In memory (no cache): the same values.
    const mem = await openDataset("qata", root, SIZE, { cacheDir: null });
    try {
      await assertMatches(mem, want, "memory");
      assert(mem.fingerprint === ds1.fingerprint, "fingerprint does not depend on caching");
    } finally {
      mem.close();
    }

    // Garble every source file but keep its size and mtime: the fingerprint cannot tell, so a
    // second open that decoded anything would fail on garbage. It must read the cache only.
    const saved = new Map<string, { bytes: Uint8Array; info: Deno.FileInfo }>();
    for (const p of await sourceFiles(root)) {
      const bytes = await Deno.readFile(p), info = await Deno.stat(p);
      saved.set(p, { bytes, info });
      await Deno.writeFile(p, new Uint8Array(bytes.length).fill(0x42));
      await Deno.utime(p, info.atime!, info.mtime!);
    }
    const anySample = (await listLvitDataset("qata", root)).splits.test[0];
    await expectRejection(
      "the garbled sources no longer decode",
      DataError,
      () => loadSample(anySample, SIZE),
    );
    const log2: string[] = [];
    const ds2 = await openDataset("qata", root, SIZE, {
      cacheDir: cache,
      log: (l) => log2.push(l),
    });
    try {
      assert(ds2.fingerprint === ds1.fingerprint, "same fingerprint");
      const decodes = log2.filter((l) => /^decoding |samples decoded|damaged/.test(l));
      assert(decodes.length === 0, `second open decoded:\n${log2.join("\n")}`);
      assert(log2.filter((l) => l.includes("from cache")).length === 3, log2.join("\n"));
      await assertMatches(ds2, want, "second open");
    } finally {
      ds2.close();
    }
    for (const [p, { bytes, info }] of saved) {
      await Deno.writeFile(p, bytes);
      await Deno.utime(p, info.atime!, info.mtime!);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("dataset cache: truncated, garbled or damaged cache files are rebuilt or repaired", async () => {
  const root = await Deno.makeTempDir({ prefix: "dscache_" });
  const cache = await Deno.makeTempDir({ prefix: "dscache_c_" });
  try {
    await makeData(root);
    const want = await reference(root);
    const open = async () => {
      const log: string[] = [];
      const ds = await openDataset("qata", root, SIZE, {
        cacheDir: cache,
        log: (l) => log.push(l),
      });
      return { ds, log };
    };
    const first = await open();
    first.ds.close();
    const dir = join(cache, "decoded", `${first.ds.fingerprint}-${SIZE}`);
    const train = join(dir, "train.bin"), val = join(dir, "val.bin");

    // Truncated: detected from the length, rebuilt.
    await Deno.truncate(train, (await Deno.stat(train)).size - 10);
    let r = await open();
    try {
      assert(r.log.some((l) => l.includes(train) && l.includes("rebuilding")), r.log.join("\n"));
      assert(r.log.some((l) => l.startsWith("decoding train")), "train decoded again");
      assert(!r.log.some((l) => l.startsWith("decoding val")), "val left alone");
      await assertMatches(r.ds, want, "after truncation");
    } finally {
      r.ds.close();
    }

    // Garbled header: detected from the magic, rebuilt.
    const bytes = await Deno.readFile(train);
    bytes.fill(0, 0, 8);
    await Deno.writeFile(train, bytes);
    r = await open();
    try {
      assert(
        r.log.some((l) => l.includes("bad magic") && l.includes("rebuilding")),
        r.log.join("\n"),
      );
      await assertMatches(r.ds, want, "after bad magic");
    } finally {
      r.ds.close();
    }

    // A damaged record: the header is intact, so the open trusts the file; the read catches the
    // checksum, decodes the sample again and patches the file.
    const v = await Deno.readFile(val);
    v[96 + 4 * 2 + 4 * SIZE * SIZE + 100] ^= 0xff; // inside record 1
    await Deno.writeFile(val, v);
    r = await open();
    try {
      assert(!r.log.some((l) => l.includes("rebuilding")), r.log.join("\n"));
      await assertMatches(r.ds, want, "damaged record");
      assert(r.log.some((l) => l.includes("record 1") && l.includes("damaged")), r.log.join("\n"));
    } finally {
      r.ds.close();
    }
    r = await open();
    try {
      await assertMatches(r.ds, want, "after repair");
      assert(!r.log.some((l) => l.includes("damaged")), `repaired for good:\n${r.log.join("\n")}`);
    } finally {
      r.ds.close();
    }

    // A cache folder that cannot be created: decode into memory, say so, still correct.
    const blocker = join(cache, "not-a-folder");
    await Deno.writeTextFile(blocker, "x");
    const log: string[] = [];
    const ds = await openDataset("qata", root, SIZE, {
      cacheDir: blocker,
      log: (l) => log.push(l),
    });
    try {
      assert(log.some((l) => l.includes("into memory instead")), log.join("\n"));
      await assertMatches(ds, want, "unwritable cache");
    } finally {
      ds.close();
    }
    // No temporary files left behind anywhere.
    for await (const e of Deno.readDir(dir)) assert(!e.name.endsWith(".tmp"), `left ${e.name}`);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("dataset cache: fingerprint follows mtime, size and text; reads are checked", async () => {
  const root = await Deno.makeTempDir({ prefix: "dscache_" });
  try {
    await makeData(root);
    const fp = async () => await datasetFingerprint(await listLvitDataset("qata", root));
    const base = await fp();
    assert(base === await fp(), "stable");

    const mask = join(root, "Val_Folder/labelcol/mask_synth_00004.png");
    const info = await Deno.stat(mask);
    await Deno.utime(mask, info.atime!, new Date(info.mtime!.getTime() + 5000));
    const touched = await fp();
    assert(touched !== base, "mtime change gives a new fingerprint");
    await Deno.utime(mask, info.atime!, info.mtime!);
    assert(await fp() === base, "restored mtime gives the old fingerprint back");

    const img = join(root, "Test_Folder/img/synth_00006.png");
    const before = await Deno.readFile(img), imgInfo = await Deno.stat(img);
    await Deno.writeFile(
      img,
      encodePng({ width: GEN, height: GEN, channels: 1, data: new Uint8Array(GEN * GEN) }),
    );
    await Deno.utime(img, imgInfo.atime!, imgInfo.mtime!);
    assert((await Deno.stat(img)).size !== before.length, "the new file has another size");
    assert(await fp() !== base, "size change gives a new fingerprint");
    await Deno.writeFile(img, before);
    await Deno.utime(img, imgInfo.atime!, imgInfo.mtime!);
    assert(await fp() === base, "restored");

    const listed = await listLvitDataset("qata", root);
    listed.splits.train[0].text += " ";
    assert(await datasetFingerprint(listed) !== base, "text change gives a new fingerprint");

    const ds = await openDataset("qata", root, 32, { cacheDir: null });
    const im = new Float32Array(2 * 3 * 32 * 32), mk = new Float32Array(2 * 32 * 32);
    await expectRejection(
      "index",
      RangeError,
      () => ds.splits.val.read([2], im, mk),
      "out of range",
    );
    await expectRejection(
      "sizes",
      RangeError,
      () => ds.splits.val.read([0, 1, 0], im, mk),
      "out arrays",
    );
    await ds.splits.val.read([1, 0], im, mk);
    ds.close();
    await expectRejection("closed", Error, () => ds.splits.val.read([0], im, mk), "closed");
    await expectRejection(
      "size 0",
      RangeError,
      () => openDataset("qata", root, 0, { cacheDir: null }),
      "size",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
