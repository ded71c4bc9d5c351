/**
 * The two hashes of the data layer: FNV-1a for the checksums inside cache files and the builtin
 * text encoder's token seeds, and hex SHA-256 for cache file names and fingerprints. Both are
 * baked into files on disk, so their values must never change.
 */

/** 32-bit FNV-1a of `bytes`, as an unsigned integer. */
export function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

/** Hex SHA-256 of the UTF-8 bytes of `text`. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
