/**
 * The static file server behind `deno task serve DIR`: serves a folder written by
 * `deno task export --web` (or any static folder) over HTTP, GET and HEAD only.
 *
 * Browsers load ES modules, `fetch` the model and compile wasm only over HTTP(S), not from
 * `file://`, so the exported page needs a server; this one keeps to what that page needs. A
 * request can only reach regular files below the root: every decoded path segment is checked
 * (no `..`, no dot files, no separators or NUL hidden in percent escapes), and the real path of
 * the file found (symbolic links resolved) must still lie inside the root's real path.
 */
import { extname, join, sep } from "node:path";

/** Content types by file extension; anything else is served as application/octet-stream. */
export const MIME_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".wasm": "application/wasm",
  ".onnx": "application/octet-stream",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".map": "application/json; charset=utf-8",
};

/** The content type of a file name (by extension, case-insensitive). */
export function mimeType(name: string): string {
  return MIME_TYPES[extname(name).toLowerCase()] ?? "application/octet-stream";
}

function plain(status: number, text: string, extra: Record<string, string> = {}): Response {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...extra },
  });
}

/**
 * The path segments of a request path, percent-decoded, or null when one could step outside
 * the root or name a hidden file: `..`, `.`, a leading dot, an encoded `/` or `\`, NUL. The URL
 * parser already folds literal `..` segments away; the check here is for what decoding reveals.
 */
export function safeSegments(pathname: string): string[] | null {
  const out: string[] = [];
  for (const raw of pathname.split("/")) {
    if (raw === "") continue;
    let s: string;
    try {
      s = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (s.startsWith(".") || /[\\/\0]/.test(s)) return null;
    out.push(s);
  }
  return out;
}

/**
 * A request handler serving the files below `root` (a folder's real path: callers resolve
 * symbolic links once with `Deno.realPath`). A folder's URL serves its `index.html`.
 */
export function staticHandler(root: string): (req: Request) => Promise<Response> {
  const inside = (p: string) => p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return plain(405, "method not allowed", { allow: "GET, HEAD" });
    }
    const segments = safeSegments(new URL(req.url).pathname);
    if (segments === null) return plain(404, "not found");
    let path = join(root, ...segments);
    let info: Deno.FileInfo;
    try {
      path = await Deno.realPath(path);
      if (!inside(path)) return plain(404, "not found");
      info = await Deno.stat(path);
      if (info.isDirectory) {
        path = await Deno.realPath(join(path, "index.html"));
        if (!inside(path)) return plain(404, "not found");
        info = await Deno.stat(path);
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
        return plain(404, "not found");
      }
      throw e;
    }
    if (!info.isFile) return plain(404, "not found");
    const headers = {
      "content-type": mimeType(path),
      "content-length": String(info.size),
      // The page and its model change on every export: always revalidate.
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    };
    if (req.method === "HEAD") return new Response(null, { headers });
    const file = await Deno.open(path, { read: true });
    return new Response(file.readable, { headers });
  };
}

/** Options of {@link serveStatic}. */
export interface ServeOptions {
  /** Port (0: any free port; default 8000). */
  port?: number;
  /** Interface to listen on (default 127.0.0.1: this machine only). */
  host?: string;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
  /** Called once listening, with the page's URL. */
  onListen?: (url: string) => void;
}

/**
 * Serves the folder `dir` until `o.signal` aborts; resolves when the server has stopped. A
 * path that is not a folder is a `Deno.errors.NotFound` / `NotADirectory` error.
 */
export async function serveStatic(dir: string, o: ServeOptions = {}): Promise<void> {
  const root = await Deno.realPath(dir);
  if (!(await Deno.stat(root)).isDirectory) {
    throw new Deno.errors.NotADirectory(`${dir} is not a folder`);
  }
  const host = o.host ?? "127.0.0.1";
  const server = Deno.serve({
    port: o.port ?? 8000,
    hostname: host,
    signal: o.signal,
    onListen: ({ port }) => {
      const h = host.includes(":") ? `[${host}]` : host;
      o.onListen?.(`http://${h}:${port}/`);
    },
  }, staticHandler(root));
  await server.finished;
}
