/**
 * Adapter and device acquisition. The adapter we got is always printed, because a run on Mesa's
 * software rasterizer is 100x slower than on a GPU and the user should know which one ran.
 */
import type { DeviceLimits } from "../../graph/plan.ts";

/** The WebGPU device this process runs on, with what is known about its adapter. */
export interface GpuContext {
  /** The device, requested with the adapter's own limits rather than the spec defaults. */
  device: GPUDevice;
  /** Human-readable adapter description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  adapter: string;
  /** The adapter's vendor string (may be empty). */
  vendor: string;
  /** True for CPU rasterizers (lavapipe, llvmpipe, SwiftShader, WARP). */
  software: boolean;
  /** The limits requested from the adapter, which compiled programs are checked against. */
  limits: DeviceLimits & { maxBufferSize: number; maxComputeWorkgroupStorageSize: number };
}

/** Thrown when WebGPU offers no adapter; the message says how to install one or use the CPU. */
export class NoAdapterError extends Error {
  constructor() {
    super(
      "No WebGPU adapter is available. Install a GPU driver with Vulkan support, or on a " +
        "machine without a GPU install Mesa's software driver: `apt-get install -y " +
        "mesa-vulkan-drivers libvulkan1` (Debian/Ubuntu), then run with " +
        "DENO_WEBGPU_BACKEND=vulkan. Or use --backend cpu.",
    );
    this.name = "NoAdapterError";
  }
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|warp|software/i;

let shared: Promise<GpuContext> | undefined;

/** Returns one device per process (later callers share it); prints the adapter once. */
export function acquireDevice(opts: { quiet?: boolean } = {}): Promise<GpuContext> {
  shared ??= open(opts.quiet ?? false);
  shared.catch(() => (shared = undefined));
  return shared;
}

async function open(quiet: boolean): Promise<GpuContext> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  const adapter = gpu ? await gpu.requestAdapter({ powerPreference: "high-performance" }) : null;
  if (!adapter) throw new NoAdapterError();
  const l = adapter.limits;
  // Ask for what the adapter can do, not the spec defaults: lavapipe allows 32 storage
  // buffers per stage and 2 GiB buffers, the defaults are 8 and 256 MiB.
  const wanted = {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
  };
  const device = await adapter.requestDevice({ requiredLimits: wanted });
  const info = adapter.info;
  const description = info.description || info.device || "unknown adapter";
  const software = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ===
      true || SOFTWARE.test(description);
  if (!quiet) {
    console.error(`webgpu: ${description}${software ? " (software adapter)" : ""}`);
  }
  return { device, adapter: description, vendor: info.vendor, software, limits: wanted };
}
