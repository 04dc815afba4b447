// Telling database failures apart, per dialect: a unique-constraint violation is a conflict the
// user caused (a name already taken); anything else from the driver is the server's problem.
// SQLite (better-sqlite3) errors carry an extended result code in `code`; PostgreSQL errors a
// five-character SQLSTATE and a severity.

function codeOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** A UNIQUE or PRIMARY KEY violation (SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY, SQLSTATE 23505). */
export function isUniqueViolation(e: unknown): boolean {
  const code = codeOf(e);
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

/** An error raised by the database or its driver (not by Ferry's own code). */
export function isDatabaseError(e: unknown): boolean {
  const code = codeOf(e);
  if (code.startsWith('SQLITE_')) return true;
  // pg's DatabaseError: an SQLSTATE plus the server's severity.
  return /^[0-9A-Z]{5}$/.test(code) && typeof (e as { severity?: unknown }).severity === 'string';
}
