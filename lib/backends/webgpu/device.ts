/**
 * Adapter and device acquisition. The adapter we got is always printed, because a run on Mesa's
 * software rasterizer is 100x slower than on a GPU and the user should know which one ran.
 * The adapter's class (software or hardware) picks the kernels programs are compiled with
 * (lib/backends/webgpu/lower.ts); LVIT_WEBGPU_KERNELS=software|hardware overrides it.
 */
import type { DeviceLimits } from "../../graph/plan.ts";
import { InputError } from "../../config/errors.ts";
import type { KernelClass } from "../../../kernels/webgpu/types.ts";

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
  /** The class whose kernels programs for this device get (the adapter's, or forced). */
  kernels: KernelClass;
  /** True when LVIT_WEBGPU_KERNELS chose `kernels`. */
  kernelsForced: boolean;
  /**
   * The limits of the device, which compiled programs are checked against and sized by, with
   * the kernel class: `compile(..., limits)` gets this device's kernels.
   */
  limits: DeviceLimits & {
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    kernels: KernelClass;
  };
}

/** The environment variable that forces a kernel class. */
export const KERNELS_ENV = "LVIT_WEBGPU_KERNELS";

/**
 * The kernel class for an adapter: `value` (LVIT_WEBGPU_KERNELS; unset or empty: the adapter's
 * class). Any other value is refused with an InputError (exit code 2 in the CLIs).
 */
export function kernelClass(
  software: boolean,
  value: string | undefined,
): { kernels: KernelClass; forced: boolean } {
  if (value === undefined || value === "") {
    return { kernels: software ? "software" : "hardware", forced: false };
  }
  if (value === "software" || value === "hardware") return { kernels: value, forced: true };
  throw new InputError(
    `${KERNELS_ENV}=${JSON.stringify(value)}: expected 'software' (register-blocked kernels, ` +
      `for CPU rasterizers such as lavapipe) or 'hardware' (GEMMs tiled through workgroup ` +
      `memory, for GPUs); unset it to choose by adapter`,
  );
}

function envKernels(): string | undefined {
  try {
    return Deno.env.get(KERNELS_ENV);
  } catch {
    // Without --allow-env the override cannot be read: the adapter decides.
    return undefined;
  }
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
  // Refuse a bad LVIT_WEBGPU_KERNELS before looking for an adapter.
  const env = envKernels();
  kernelClass(false, env);
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
  const { kernels, forced } = kernelClass(software, env);
  if (!quiet) {
    console.error(
      `webgpu: ${description}${software ? " (software adapter)" : ""}, ${kernels} kernels` +
        (forced ? ` (${KERNELS_ENV})` : ""),
    );
  }
  const limits = {
    ...wanted,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    kernels,
  };
  return {
    device,
    adapter: description,
    vendor: info.vendor,
    software,
    kernels,
    kernelsForced: forced,
    limits,
  };
}
