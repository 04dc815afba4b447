// One catalogue of coded errors for the whole domain. Each face maps a code to its own wire
// format: the Cloudreve face to its numeric code, the path face to an HTTP status (and, for
// download errors, one of hoody-files' error names). Codes are stable once released.

export const ErrorCodes = {
  PARAM_INVALID: { cloudreve: 40001, status: 400, message: 'Invalid parameters' },
  LOGIN_REQUIRED: { cloudreve: 401, status: 401, message: 'Login required' },
  FORBIDDEN: { cloudreve: 403, status: 403, message: 'Permission denied' },
  NOT_FOUND: { cloudreve: 404, status: 404, message: 'Not found' },
  CONFLICT: { cloudreve: 409, status: 409, message: 'Conflict' },
  OBJECT_EXISTS: { cloudreve: 40004, status: 409, message: 'Object existed' },
  SIGN_EXPIRED: { cloudreve: 40005, status: 403, message: 'signature expired' },
  GROUP_NOT_ALLOWED: { cloudreve: 40007, status: 403, message: 'Group not allowed to do this' },
  ADMIN_REQUIRED: { cloudreve: 40008, status: 403, message: 'Admin required' },
  UPLOAD_SESSION_EXPIRED: { cloudreve: 40011, status: 404, message: 'Upload session expired or not exist' },
  INVALID_CHUNK_INDEX: { cloudreve: 40012, status: 400, message: 'Invalid chunk index' },
  INVALID_CONTENT_LENGTH: { cloudreve: 40013, status: 400, message: 'Invalid Content-Length' },
  TOO_MANY_SOURCES: { cloudreve: 40015, status: 400, message: '' },
  PATH_NOT_EXIST: { cloudreve: 40016, status: 404, message: 'Path not exist' },
  USER_BANNED: { cloudreve: 40017, status: 403, message: 'This account has been blocked' },
  FEATURE_DISABLED: { cloudreve: 40019, status: 403, message: 'This feature is not enabled' },
  CREDENTIAL_INVALID: { cloudreve: 40020, status: 401, message: 'Credential invalid' },
  USER_NOT_FOUND: { cloudreve: 40021, status: 404, message: 'User not found' },
  EMAIL_EXISTS: { cloudreve: 40032, status: 409, message: 'Email already in use' },
  FILE_TOO_LARGE: { cloudreve: 40049, status: 413, message: 'File too large' },
  INSUFFICIENT_CAPACITY: { cloudreve: 40051, status: 507, message: 'Insufficient capacity' },
  TOO_MANY_UPLOAD_SESSIONS: {
    cloudreve: 40026,
    status: 429,
    message: 'Too many unfinished uploads; finish or cancel one first',
  },
  ILLEGAL_NAME: { cloudreve: 40052, status: 400, message: 'Invalid object name' },
  ROOT_PROTECTED: { cloudreve: 40053, status: 403, message: 'Root folder cannot be modified' },
  INCORRECT_PASSWORD: { cloudreve: 40069, status: 403, message: 'Incorrect password' },
  RECENT_SIGN_IN_REQUIRED: {
    cloudreve: 403,
    status: 403,
    message: 'Give your password, or sign in again, to do this',
  },
  TOO_MANY_TASKS: { cloudreve: 40048, status: 429, message: 'Too many unfinished tasks' },
  INVALID_SIGN: { cloudreve: 40071, status: 403, message: 'invalid sign' },
  TOO_MANY_URIS: { cloudreve: 40074, status: 400, message: 'Too many URIs' },
  ENTITY_NOT_EXIST: { cloudreve: 40077, status: 404, message: 'Entity not exist' },
  WRONG_PASSWORD: { cloudreve: 40080, status: 401, message: 'Incorrect password or email address' },
  BATCH_PARTIAL: { cloudreve: 40081, status: 400, message: 'One or more operation failed' },
  RATE_LIMITED: { cloudreve: 40026, status: 429, message: 'Too many attempts, try again later' },
  CREATE_TASK_FAILED: { cloudreve: 40048, status: 400, message: 'Failed to create task' },
  SOURCE_BLOCKED: { cloudreve: 40001, status: 403, message: 'Source address is not allowed' },
  SOURCE_INVALID: { cloudreve: 40001, status: 400, message: 'Invalid source URL' },
  DB_ERROR: { cloudreve: 50001, status: 503, message: 'Database error' },
  IO_FAILED: { cloudreve: 50004, status: 500, message: 'I/O failure' },
  LOW_DISK_SPACE: { cloudreve: 50004, status: 507, message: 'The server is low on disk space' },
  INTERNAL: { cloudreve: 50005, status: 500, message: 'Internal error' },
  NODE_OFFLINE: { cloudreve: 50010, status: 503, message: 'Node offline' },
} as const satisfies Record<string, { cloudreve: number; status: number; message: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(
      message ?? ErrorCodes[code].message,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.code = code;
    this.details = options?.details;
  }
}

/** A batch where some items failed: keyed by the item's identifier (URI, source URL). */
export class BatchError extends AppError {
  readonly failures: Map<string, AppError>;
  /** What did succeed, when the caller asked for partial results. */
  readonly data: unknown;
  constructor(failures: Map<string, AppError>, data?: unknown) {
    const only = failures.size === 1 ? [...failures.values()][0] : undefined;
    super('BATCH_PARTIAL', only ? only.message : 'One or more operation failed');
    this.failures = failures;
    this.data = data;
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;
