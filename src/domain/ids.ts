// Public ids are Hashids of the pair [numericId, typeCode], as in Cloudreve, so ids look and
// decode the same way for existing clients. The salt is per installation.
import Hashids from 'hashids';

export const IdType = {
  user: 1,
  file: 2,
  folder: 3,
  /** storage policy (the list's and upload session's storage_policy.id) */
  policy: 5,
  group: 7,
  entity: 8,
  node: 10,
  task: 11,
} as const;
export type IdKind = keyof typeof IdType;

export class IdCodec {
  private readonly hashids: Hashids;
  constructor(salt: string) {
    this.hashids = new Hashids(salt);
  }
  encode(kind: IdKind, id: number): string {
    return this.hashids.encode([id, IdType[kind]]);
  }
  /** The numeric id, or null when the string is not an id of that kind. */
  decode(kind: IdKind, value: string): number | null {
    if (typeof value !== 'string' || value.length === 0 || value.length > 64) return null;
    let parts: unknown[];
    try {
      parts = this.hashids.decode(value);
    } catch {
      return null;
    }
    if (parts.length !== 2 || Number(parts[1]) !== IdType[kind]) return null;
    const id = Number(parts[0]);
    return Number.isSafeInteger(id) ? id : null;
  }
}

/** Entity ids of files without a blob (empty files) sit above every real blob id, one per file. */
export const EMPTY_ENTITY_BASE = 2 ** 40;

/**
 * A file's `primary_entity` id: its blob, or for an empty file its own id above
 * EMPTY_ENTITY_BASE (so no two files share one); folders have none.
 */
export function primaryEntityId(file: { type: number; id: number; blob_id: number | null }): number | null {
  if (file.type === 1) return null;
  return file.blob_id ?? EMPTY_ENTITY_BASE + file.id;
}
