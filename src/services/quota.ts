// Bytes a user holds on the server's disk beyond their stored files: the declared size of each
// open upload session, and what each running (or retry-waiting) download is fetching into
// staging. Quota checks count these as used, so unfinished work cannot fill the disk past the
// quota (issue 18, finding 3). Queued tasks hold nothing yet and are not counted.
import type { Kysely, Transaction } from 'kysely';
import type { DB } from '../db/schema.ts';

type Db = Kysely<DB> | Transaction<DB>;

interface StatusJson {
  total?: unknown;
  downloaded?: unknown;
  files?: Array<{ index?: unknown; size?: unknown; selected?: unknown }>;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);

/** What one running task holds: selected files not yet landed, else its known or fetched size. */
export function taskReservation(downloadStatus: string | null, landedJson: string): number {
  if (!downloadStatus) return 0;
  let status: StatusJson;
  let landed: Set<unknown>;
  try {
    status = JSON.parse(downloadStatus) as StatusJson;
    landed = new Set(JSON.parse(landedJson) as unknown[]);
  } catch {
    return 0;
  }
  const files = Array.isArray(status.files) ? status.files : [];
  let selected = 0;
  for (const f of files) if (f.selected === true && !landed.has(f.index)) selected += num(f.size);
  // Once files have landed (torrents land file by file) they are charged as stored files.
  if (landed.size > 0) return selected;
  return Math.max(selected, num(status.total), num(status.downloaded));
}

/** Reserved bytes of `ownerId` at `now`; `exceptTask` leaves one task out (the one asking). */
export async function reservedBytes(
  db: Db,
  ownerId: number,
  now: number,
  exceptTask?: number,
): Promise<{ uploads: number; sessions: number; tasks: number }> {
  const sessions = await db
    .selectFrom('upload_sessions')
    .select('size')
    .where('owner_id', '=', ownerId)
    .where('expires_at', '>=', now)
    .execute();
  let query = db
    .selectFrom('tasks')
    .select(['download_status', 'landed'])
    .where('owner_id', '=', ownerId)
    .where('status', 'in', ['processing', 'suspending']);
  if (exceptTask !== undefined) query = query.where('id', '!=', exceptTask);
  const running = await query.execute();
  return {
    uploads: sessions.reduce((s, r) => s + Number(r.size), 0),
    sessions: sessions.length,
    tasks: running.reduce((s, r) => s + taskReservation(r.download_status, r.landed), 0),
  };
}
