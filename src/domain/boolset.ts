// Cloudreve's boolset: flag n is bit (n & 7) of byte (n >> 3), base64 with padding.
export function encodeBoolset(flags: readonly number[]): string {
  if (flags.length === 0) return '';
  const bytes = Buffer.alloc((Math.max(...flags) >> 3) + 1);
  for (const n of flags) bytes[n >> 3]! |= 1 << (n & 7);
  return bytes.toString('base64');
}

export function hasFlag(b64: string, n: number): boolean {
  const bytes = Buffer.from(b64, 'base64');
  return n >> 3 < bytes.length && (bytes[n >> 3]! & (1 << (n & 7))) !== 0;
}

/** Group permission bits used by the web client (admin 0, archive download 4, remote download 9). */
export const GroupPermission = { admin: 0, archiveDownload: 4, remoteDownload: 9, selectNode: 13 } as const;
/** Node capability bits: 3 = remote download. */
export const NodeCapability = { remoteDownload: 3 } as const;
/** The capabilities of a folder in a user's own drive, as Cloudreve OSS reports them. */
export const MY_FS_CAPABILITY = 'w8edAQ==';
