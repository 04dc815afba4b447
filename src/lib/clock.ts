export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };

/** RFC 3339 with milliseconds and the server's UTC offset, the shape Cloudreve clients parse. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
