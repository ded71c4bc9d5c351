/**
 * What the command-line tests share: running a Deno script as a subprocess, checking that bad
 * input produced a message and not a stack trace, and hashing files to compare runs bitwise.
 */

/** Runs `deno run -A --unstable-webgpu <args>` and returns its exit code and all its output. */
export async function denoRun(
  args: string[],
  cwd?: string,
): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

/** Fails when `text` holds a JavaScript stack trace or an uncaught-error banner. */
export function assertNoStackTrace(text: string): void {
  if (/^\s+at /m.test(text) || text.includes("Uncaught")) {
    throw new Error(`stack trace printed:\n${text}`);
  }
}

/** Hex SHA-256 of a file's bytes. */
export async function sha256File(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs `f` in a fresh temporary folder (named `<prefix>...`), removed afterwards. */
export async function withTmp(prefix: string, f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
