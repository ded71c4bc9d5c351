/**
 * Single-precision GEMM for the CPU backend: `cblas_sgemm` from a system BLAS through FFI
 * (OpenBLAS, the reference/alternatives libblas, or Apple Accelerate), with a blocked TypeScript
 * GEMM as the fallback when no library loads.
 *
 * The library is opened lazily on the first call, so importing this module needs no
 * `--allow-ffi`; running a GEMM with a library does. `LVIT_BLAS` overrides the search: a path to
 * a library, or `none` to force the TypeScript fallback.
 */
import { sgemmTs } from "./gemm_ts.ts";
import type { GemmArgs } from "./gemm_split.ts";

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

const SYMBOLS = {
  cblas_sgemm: {
    // order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
  // OpenBLAS only; absent from Accelerate and the reference CBLAS.
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  // The kernel set a DYNAMIC_ARCH OpenBLAS picked for this CPU (or OPENBLAS_CORETYPE forced).
  openblas_get_corename: { parameters: [], result: "pointer", optional: true },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>;

interface Loaded {
  lib: Lib | null;
  path: string | null;
  threads?: number;
  /** OpenBLAS's kernel set, e.g. "Haswell", "SkylakeX", "Zen". */
  core?: string;
}

let loaded: Loaded | null = null;

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env the override cannot be read; the default search still applies.
    return undefined;
  }
}

/** Library paths to try, most specific first. */
function candidates(): string[] {
  const out: string[] = [];
  if (Deno.build.os === "darwin") {
    out.push("/System/Library/Frameworks/Accelerate.framework/Accelerate");
    for (const dir of ["/opt/homebrew/opt/openblas/lib", "/usr/local/opt/openblas/lib"]) {
      out.push(`${dir}/libopenblas.dylib`, `${dir}/libopenblas.0.dylib`);
    }
  }
  const names = ["libopenblas.so.0", "libopenblas.so", "libblas.so.3", "libcblas.so.3"];
  const dirs = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/opt/openblas/lib",
  ];
  for (const d of dirs) for (const n of names) out.push(`${d}/${n}`);
  // Bare sonames last: the dynamic linker's own search (ld.so.cache, LD_LIBRARY_PATH).
  if (Deno.build.os !== "darwin" && Deno.build.os !== "windows") out.push(...names);
  return out;
}

function isPermissionError(e: unknown): boolean {
  const errs = Deno.errors as Record<string, unknown>;
  for (const k of ["NotCapable", "PermissionDenied"]) {
    const cls = errs[k];
    if (typeof cls === "function" && e instanceof (cls as new () => Error)) return true;
  }
  return false;
}

function open(path: string): Loaded {
  const lib = Deno.dlopen(path, SYMBOLS);
  const threads = lib.symbols.openblas_get_num_threads?.() ?? undefined;
  const p = lib.symbols.openblas_get_corename?.() ?? null;
  const core = p === null ? undefined : new Deno.UnsafePointerView(p).getCString();
  return { lib, path, threads, core };
}

function load(): Loaded {
  const override = envVar("LVIT_BLAS");
  if (override === "none") return { lib: null, path: null };
  const noFfi = "--allow-ffi is not granted (run with --allow-ffi to use BLAS)";
  let note = "";
  if (override) {
    try {
      return open(override);
    } catch (e) {
      if (isPermissionError(e)) return fallback(noFfi);
      note = `LVIT_BLAS=${override} did not load (${(e as Error).message.split("\n")[0]}); `;
    }
  }
  for (const path of candidates()) {
    try {
      const l = open(path);
      if (note) console.error(`lvit: ${note}using ${path}`);
      return l;
    } catch (e) {
      if (isPermissionError(e)) return fallback(note + noFfi);
    }
  }
  return fallback(
    `${note}no BLAS library found. Install OpenBLAS (apt-get install libopenblas0-pthread; ` +
      `macOS: brew install openblas) or set LVIT_BLAS=/path/to/libopenblas.so`,
  );
}

function fallback(why: string): Loaded {
  // One line, once per process: the fallback is correct but an order of magnitude slower.
  console.error(`lvit: CPU GEMMs use the slow TypeScript fallback: ${why}.`);
  return { lib: null, path: null };
}

function state(): Loaded {
  return loaded ??= load();
}

/**
 * The BLAS library in use (null: the TypeScript fallback), OpenBLAS's thread count and its kernel
 * set. The kernel set decides the order of the GEMMs' sums, so runs on CPUs that OpenBLAS serves
 * with different kernels (or with another thread count) differ in their last bits, and training
 * amplifies that into different curves; `OPENBLAS_CORETYPE` forces a kernel set.
 */
export function blasInfo(): { library: string | null; threads?: number; kernels?: string } {
  const s = state();
  return {
    library: s.path,
    ...(s.threads === undefined ? {} : { threads: s.threads }),
    ...(s.core === undefined ? {} : { kernels: s.core }),
  };
}

/**
 * Asks the library for `n` threads of its own; false where it has no such control (Accelerate,
 * the reference BLAS). The CPU backend's helper threads (threads.ts) split GEMMs themselves and
 * ask OpenBLAS for one thread, so that its idle threads never compete with them for the cores.
 * No library (the TypeScript fallback) counts as controlled: it is single-threaded.
 */
export function setBlasThreads(n: number): boolean {
  const s = state();
  if (s.lib === null) return true;
  const set = s.lib.symbols.openblas_set_num_threads;
  if (!set) return false;
  set(n);
  s.threads = s.lib.symbols.openblas_get_num_threads?.() ?? n;
  return true;
}

/**
 * Where sgemm hands GEMMs to be split across threads (the CPU executor installs one while a
 * program with helper threads runs); returns false for a GEMM it does not split.
 */
export type GemmSplitter = (g: GemmArgs) => boolean;

let splitter: GemmSplitter | null = null;

/** Installs `s` (null: none) and returns the previous splitter. */
export function setGemmSplitter(s: GemmSplitter | null): GemmSplitter | null {
  const prev = splitter;
  splitter = s;
  return prev;
}

function checkOperand(
  name: string,
  rows: number,
  cols: number,
  ld: number,
  a: Float32Array,
): void {
  // A native GEMM past the end of a typed array corrupts the heap; this check is O(1).
  if (ld < Math.max(1, cols) || (rows > 0 && cols > 0 && (rows - 1) * ld + cols > a.length)) {
    throw new RangeError(
      `sgemm: ${name} is ${rows}x${cols} with leading dimension ${ld} but holds ${a.length} values`,
    );
  }
}

/**
 * C = alpha * op(A) * op(B) + beta * C, row-major, where op(A) is M x K and op(B) is K x N.
 * A is stored M x K (K x M when transA), B is K x N (N x K when transB), each with the given
 * leading dimension (elements between consecutive rows). As in BLAS, beta = 0 ignores C's
 * previous contents (NaN included). Subarrays may be passed for any operand.
 */
export function sgemm(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C: Float32Array,
  ldc: number,
): void {
  if (M <= 0 || N <= 0) return;
  checkOperand("C", M, N, ldc, C);
  if (K > 0) {
    checkOperand("A", transA ? K : M, transA ? M : K, lda, A);
    checkOperand("B", transB ? N : K, transB ? K : N, ldb, B);
  }
  if (splitter !== null && K > 0) {
    const g = { transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc };
    if (splitter(g)) return;
  }
  sgemmHere(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/** {@link sgemmHere} with its arguments in one object (a block of a split GEMM). */
export function sgemmArgs(g: GemmArgs): void {
  sgemmHere(g.transA, g.transB, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.B, g.ldb, g.beta, g.C, g.ldc);
}

/** sgemm on the calling thread, never split (operands already checked). */
export function sgemmHere(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C: Float32Array,
  ldc: number,
): void {
  if (M <= 0 || N <= 0) return;
  const lib = state().lib;
  if (lib === null || K <= 0) {
    sgemmTs(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  lib.symbols.cblas_sgemm(
    CBLAS_ROW_MAJOR,
    transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
    transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
    M,
    N,
    K,
    alpha,
    A,
    lda,
    B,
    ldb,
    beta,
    C,
    ldc,
  );
}
