import {
  fillNormal,
  fillUniform,
  fillUniformRange,
  philox4x32,
  philoxInto,
  Stream,
  uniformAt,
  wordToUniform,
} from "../lib/rng/philox.ts";
import { PHILOX_WGSL } from "../kernels/webgpu/philox.ts";
import { PHILOX_BLOCKS_MAX, philoxBlocks } from "../lib/rng/philox_blocks.ts";
import { assert, assertEquals } from "./assert.ts";

const hex = (a: Uint32Array) => Array.from(a, (w) => w.toString(16).padStart(8, "0")).join(" ");

// Random123 kat_vectors, philox4x32 10.
const KAT: [number[], number[], string][] = [
  [[0, 0, 0, 0], [0, 0], "6627e8d5 e169c58d bc57ac4c 9b00dbd8"],
  [
    [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0xffffffff, 0xffffffff],
    "408f276d 41c83b0e a20bc7c6 6d5451fd",
  ],
  [
    [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    [0xa4093822, 0x299f31d0],
    "d16cfe09 94fdcceb 5001e420 24126ea1",
  ],
];

Deno.test("philox4x32-10 matches Random123 known answers", () => {
  for (const [c, k, want] of KAT) {
    assertEquals(
      hex(philox4x32(c as [number, number, number, number], k as [number, number])),
      want,
    );
    const out = new Uint32Array(4);
    philoxInto(out, c[0], c[1], c[2], c[3], k[0], k[1]);
    assertEquals(hex(out), want);
  }
});

// Straightforward BigInt Philox, used only to cross-check the 16-bit split arithmetic on
// arbitrary inputs (the known answers exercise few operand patterns).
function philoxBig(c: number[], k: number[]): Uint32Array {
  const mask = 0xffffffffn;
  let [x0, x1, x2, x3] = c.map(BigInt);
  let [k0, k1] = k.map(BigInt);
  for (let r = 0; r < 10; r++) {
    if (r > 0) [k0, k1] = [(k0 + 0x9e3779b9n) & mask, (k1 + 0xbb67ae85n) & mask];
    const p0 = 0xd2511f53n * x0, p1 = 0xcd9e8d57n * x2;
    [x0, x1, x2, x3] = [(p1 >> 32n) ^ x1 ^ k0, p1 & mask, (p0 >> 32n) ^ x3 ^ k1, p0 & mask];
  }
  return new Uint32Array([x0, x1, x2, x3].map(Number));
}

Deno.test("philox4x32 agrees with a BigInt reference on varied inputs", () => {
  const w = new Uint32Array(4);
  for (let i = 0; i < 500; i++) {
    philoxInto(w, i, 0, 0, 0, 12345, 678);
    const c = [w[0], w[1], w[2], w[3]], k = [(w[1] ^ w[2]) >>> 0, (w[3] + i) >>> 0];
    assertEquals(
      hex(philox4x32(c as [number, number, number, number], [k[0], k[1]])),
      hex(philoxBig(c, k)),
    );
  }
});

Deno.test("philoxBlocks (WebAssembly) gives philoxInto's words for runs of counters", () => {
  for (const [c, k] of KAT) {
    assertEquals(
      hex(philoxBlocks(c[0], 1, c[1], c[2], c[3], k[0], k[1])),
      hex(philox4x32(
        c as [number, number, number, number],
        k as [number, number],
      )),
    );
  }
  const w = new Uint32Array(4);
  // Runs that wrap the first counter word past 2^32, all-ones words, the dropout keying.
  const runs = [
    [0xffffff00, PHILOX_BLOCKS_MAX, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0, 1000, 0, 12345, 0, 2 ** 32 - 7, Stream.dropout],
    [777, 3, 5, 6, 7, 8, 9],
  ];
  for (const [b0, n, c1, c2, c3, k0, k1] of runs) {
    const got = philoxBlocks(b0, n, c1, c2, c3, k0, k1);
    assertEquals(got.length, 4 * n);
    for (let i = 0; i < n; i++) {
      philoxInto(w, b0 + i, c1, c2, c3, k0, k1);
      for (let j = 0; j < 4; j++) {
        if (got[4 * i + j] !== w[j]) throw new Error(`block ${b0}+${i} word ${j} differs`);
      }
    }
  }
  assertEquals(philoxBlocks(5, 0, 0, 0, 0, 0, 0).length, 0);
  let refused = false;
  try {
    philoxBlocks(0, PHILOX_BLOCKS_MAX + 1, 0, 0, 0, 0, 0);
  } catch (e) {
    refused = e instanceof RangeError;
  }
  assert(refused, "more blocks than the module's memory holds are refused");
});

Deno.test("draws are a pure function of (seed, stream, step, index)", () => {
  const a = new Float64Array(1001), b = new Float64Array(1001);
  fillUniform(a, 42, Stream.dropout, 7);
  fillUniform(b, 42, Stream.dropout, 7);
  assertEquals(a, b);

  const differs = (x: Float64Array) => x.some((v, i) => v !== a[i]);
  const c = new Float64Array(1001);
  fillUniform(c, 42, Stream.init, 7);
  assert(differs(c), "streams must differ");
  fillUniform(c, 42, Stream.dropout, 8);
  assert(differs(c), "steps must differ");
  fillUniform(c, 43, Stream.dropout, 7);
  assert(differs(c), "seeds must differ");

  // Layout: element 4j is uniformAt(j + offset); an offset slice matches the full sequence.
  for (let j = 0; j < 250; j++) assertEquals(a[4 * j], uniformAt(42, Stream.dropout, 7, j));
  const tail = new Float64Array(401);
  fillUniform(tail, 42, Stream.dropout, 7, 150);
  assertEquals(tail, a.subarray(600));

  // f32 and f64 outputs hold the same values, since every uniform is a multiple of 2^-24.
  const f = new Float32Array(1001);
  fillUniform(f, 42, Stream.dropout, 7);
  assertEquals(Array.from(f), Array.from(a));

  // Indices past 2^32 use the counter's second word.
  const big = 2 ** 32 * 3 + 5;
  const w = philox4x32([5, 3, 7, 0], [42, Stream.dropout]);
  assertEquals(uniformAt(42, Stream.dropout, 7, big), wordToUniform(w[0]));
});

Deno.test("uniform and normal moments are sane", () => {
  const n = 100_000;
  const u = new Float64Array(n);
  fillUniform(u, 1234, Stream.data, 0);
  let s = 0, s2 = 0, min = 1, max = 0;
  for (const v of u) s += v, s2 += v * v, min = Math.min(min, v), max = Math.max(max, v);
  const mean = s / n, variance = s2 / n - mean * mean;
  // Standard errors are ~9e-4 (mean) and ~2.4e-4 (variance); tolerances are about 5 sigma.
  assert(Math.abs(mean - 0.5) < 5e-3, `uniform mean ${mean}`);
  assert(Math.abs(variance - 1 / 12) < 1.5e-3, `uniform variance ${variance}`);
  assert(min >= 0 && max < 1, `uniform range [${min}, ${max}]`);

  const z = new Float32Array(n + 1); // odd length exercises the trailing element
  fillNormal(z, 1234, Stream.init, 3, 2, 3);
  let t = 0, t2 = 0;
  for (const v of z) {
    assert(Number.isFinite(v));
    t += v, t2 += v * v;
  }
  const zm = t / z.length, zv = t2 / z.length - zm * zm;
  // Standard errors are ~0.0095 (mean) and ~0.04 (variance) for std 3.
  assert(Math.abs(zm - 2) < 0.05, `normal mean ${zm}`);
  assert(Math.abs(zv - 9) < 0.25, `normal variance ${zv}`);

  const r = new Float32Array(10_000);
  fillUniformRange(r, -3, 5, 9, Stream.augment, 1);
  let rs = 0;
  for (const v of r) {
    assert(v >= -3 && v <= 5);
    rs += v;
  }
  assert(Math.abs(rs / r.length - 1) < 0.15, `range mean ${rs / r.length}`);
});

// Decided before registering the test so a machine without WebGPU reports "ignored".
const adapter = await navigator.gpu?.requestAdapter();
const requireGpu = Deno.env.get("LVIT_REQUIRE_WEBGPU") === "1";
if (!adapter && !requireGpu) console.log("rng_test: no WebGPU adapter, skipping GPU test");

Deno.test({
  name: "WGSL philox4x32 and philox_uniform are bit-identical to TS",
  ignore: !adapter && !requireGpu,
  async fn() {
    assert(adapter, "LVIT_REQUIRE_WEBGPU=1 but navigator.gpu.requestAdapter() returned null");
    const n = 4099;
    // Inputs: the known-answer counters, edge values near 0 and 0xffffffff, then pseudo-random.
    const ctr = new Uint32Array(4 * n), key = new Uint32Array(4 * n);
    const edge = [0, 1, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
    const w = new Uint32Array(4);
    for (let i = 0; i < n; i++) {
      philoxInto(w, i, 99, 0, 0, 7, 11);
      if (i < KAT.length) {
        ctr.set(KAT[i][0], 4 * i), key.set(KAT[i][1], 4 * i);
      } else if (i < 200) {
        for (let j = 0; j < 4; j++) ctr[4 * i + j] = edge[(w[j] >>> 0) % edge.length];
        key[4 * i] = edge[w[0] % 7], key[4 * i + 1] = edge[w[1] % 5 + 3];
      } else {
        ctr.set(w, 4 * i);
        // High counter words near 0xffffffff in some rows.
        if (i % 3 === 0) ctr[4 * i] = 0xffffffff - (i & 0xff);
        key[4 * i] = w[2] ^ w[0], key[4 * i + 1] = w[3] + i;
      }
    }

    const device = await adapter.requestDevice();
    try {
      const code = PHILOX_WGSL + `
@group(0) @binding(0) var<storage, read> ctr: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> key: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> outp: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= arrayLength(&ctr)) { return; }
  let x = philox4x32(ctr[i], key[i].xy);
  outp[2u * i] = x;
  let u = vec4<f32>(philox_uniform(x.x), philox_uniform(x.y), philox_uniform(x.z),
                    philox_uniform(x.w));
  outp[2u * i + 1u] = bitcast<vec4<u32>>(u);
}
`;
      const module = device.createShaderModule({ code });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((m) => m.type === "error");
      assertEquals(errors.map((m) => m.message), []);

      const upload = (data: Uint32Array) => {
        const buf = device.createBuffer({
          size: data.byteLength,
          usage: GPUBufferUsage.STORAGE,
          mappedAtCreation: true,
        });
        new Uint32Array(buf.getMappedRange()).set(data);
        buf.unmap();
        return buf;
      };
      const ctrBuf = upload(ctr), keyBuf = upload(key);
      const outSize = 2 * n * 16;
      const outBuf = device.createBuffer({
        size: outSize,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
      });
      const readBuf = device.createBuffer({
        size: outSize,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });

      const pipeline = device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: ctrBuf } },
          { binding: 1, resource: { buffer: keyBuf } },
          { binding: 2, resource: { buffer: outBuf } },
        ],
      });
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(Math.ceil(n / 64));
      pass.end();
      enc.copyBufferToBuffer(outBuf, 0, readBuf, 0, outSize);
      device.queue.submit([enc.finish()]);

      await readBuf.mapAsync(GPUMapMode.READ);
      const got = new Uint32Array(readBuf.getMappedRange().slice(0));
      readBuf.unmap();
      for (const b of [ctrBuf, keyBuf, outBuf, readBuf]) b.destroy();

      const want = new Uint32Array(4);
      const wantU = new Float32Array(4);
      const wantUBits = new Uint32Array(wantU.buffer);
      let mismatches = 0;
      for (let i = 0; i < n; i++) {
        philoxInto(
          want,
          ctr[4 * i],
          ctr[4 * i + 1],
          ctr[4 * i + 2],
          ctr[4 * i + 3],
          key[4 * i],
          key[4 * i + 1],
        );
        for (let j = 0; j < 4; j++) wantU[j] = wordToUniform(want[j]);
        for (let j = 0; j < 4; j++) {
          if (got[8 * i + j] !== want[j] || got[8 * i + 4 + j] !== wantUBits[j]) {
            if (mismatches++ < 5) {
              console.error(
                `row ${i} word ${j}: gpu ${got[8 * i + j]} / ${got[8 * i + 4 + j]}, ts ${
                  want[j]
                } / ${wantUBits[j]}`,
              );
            }
          }
        }
      }
      assertEquals(mismatches, 0);
      assertEquals(hex(got.subarray(0, 4)), KAT[0][2]);
    } finally {
      device.destroy();
    }
  },
});
