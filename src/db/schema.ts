// Table types for Kysely. Times are Unix milliseconds (bigint in PostgreSQL, integer in
// SQLite) so both dialects store and return the same numbers. Booleans are 0/1 integers.
import type { Generated } from 'kysely';

export interface SettingsTable {
  key: string;
  value: string;
}

export interface GroupsTable {
  id: Generated<number>;
  name: string;
  is_admin: number;
  quota_bytes: number;
  allow_remote_download: number;
  max_sources_per_request: number;
  max_concurrent_tasks: number;
  /** 0 = the server's default */
  download_connections: number;
  /** bytes/s per task; 0 = unlimited */
  speed_limit: number;
  created_at: number;
}

export interface UsersTable {
  id: Generated<number>;
  email: string;
  nickname: string;
  password_hash: string;
  group_id: number;
  status: string;
  storage_used: number;
  /** bumped on password change: refresh tokens carry it, so a change signs every session out */
  credential_version: number;
  created_at: number;
  updated_at: number;
}

export interface ApiTokensTable {
  id: Generated<number>;
  user_id: number;
  name: string;
  token_hash: string;
  token_prefix: string;
  created_at: number;
  last_used_at: number | null;
  expires_at: number | null;
  revoked_at: number | null;
}

/** One sign-in: a refresh chain (0006_sessions). */
export interface SessionsTable {
  root_token_id: string;
  user_id: number;
  /** the jti of the one refresh token that may be used next */
  current_jti: string;
  /** the jti it replaced: reused within a few seconds it is a race, later a theft */
  previous_jti: string | null;
  rotated_at: number;
  /** when the password was given */
  auth_time: number;
  expires_at: number;
  revoked_at: number | null;
}

export interface FilesTable {
  id: Generated<number>;
  owner_id: number;
  /** null only for a user's root folder */
  parent_id: number | null;
  name: string;
  /** 0 file, 1 folder (Cloudreve's numbering) */
  type: number;
  size: number;
  blob_id: number | null;
  created_at: number;
  updated_at: number;
}

export interface BlobsTable {
  id: Generated<number>;
  storage_key: string;
  size: number;
  /** files pointing at it; the bytes are deleted when it drops to 0 */
  ref_count: number;
  created_at: number;
  /** CRC-32 of the bytes, once a zip archive has computed it (0004_blob_crc32) */
  crc32: number | null;
  /** random, never reused: signed links and ETags bind to it (0005_ids_never_reused) */
  nonce: Generated<string>;
}

/** A user's webhook (0011_webhooks); `events` is a JSON array of event names. */
export interface WebhooksTable {
  id: Generated<number>;
  owner_id: number;
  url: string;
  events: string;
  secret: string;
  created_at: number;
}

/** One delivery of one event of one task to one webhook. */
export interface WebhookDeliveriesTable {
  id: Generated<number>;
  webhook_id: number;
  task_id: number;
  event: string;
  /** pending | delivered | failed */
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface UploadSessionsTable {
  id: string;
  owner_id: number;
  parent_id: number;
  name: string;
  size: number;
  chunk_size: number;
  next_index: number;
  last_modified: number | null;
  expires_at: number;
  created_at: number;
}

export interface TasksTable {
  id: Generated<number>;
  owner_id: number;
  type: string;
  status: string;
  phase: string;
  /** the path face's download_id (UUID) */
  public_id: string;
  src: string;
  src_file: string;
  dst: string;
  dst_folder_id: number;
  /** JSON: TaskOptions (filename, headers, checksum, connections, timeout...) */
  options: string;
  /** JSON: the last downloader status (summary.props.download) or null */
  download_status: string | null;
  error: string | null;
  /** a FailureCode when status is error */
  failure: string | null;
  /** JSON array of strings */
  error_history: string;
  retry_count: number;
  resume_time: number | null;
  node_id: number;
  /** JSON: the downloader's resume state */
  checkpoint: string | null;
  /** relative path of the file(s) committed into the tree, for the path face's history */
  result_path: string | null;
  result_size: number | null;
  /** number of files that failed to land */
  failed_files: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  /** JSON array of selected file indexes, or null = all (multi-file sources) */
  selection: string | null;
  /** JSON array of file indexes already landed in the drive */
  landed: Generated<string>;
  /** how many times the task was claimed (0010_task_runs): the current run's number */
  run_count: Generated<number>;
  /** set while the user has paused the task (status suspending, no resume time) */
  paused_at: number | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  ended_at: number | null;
}

export interface NodesTable {
  id: Generated<number>;
  name: string;
  type: string;
  capabilities: string;
  status: string;
  last_seen_at: number;
  created_at: number;
}

export interface ArchiveSessionsTable {
  id: string;
  owner_id: number;
  /** JSON: file ids */
  file_ids: string;
  expires_at: number;
}

export interface DB {
  settings: SettingsTable;
  groups: GroupsTable;
  users: UsersTable;
  api_tokens: ApiTokensTable;
  sessions: SessionsTable;
  files: FilesTable;
  blobs: BlobsTable;
  upload_sessions: UploadSessionsTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  tasks: TasksTable;
  nodes: NodesTable;
  archive_sessions: ArchiveSessionsTable;
}
