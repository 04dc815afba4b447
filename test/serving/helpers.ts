// Shared helpers for the serving tests: temp dirs, a loopback fastify server, hashing and a
// minimal zip central-directory reader (enough to check flags, sizes and ZIP64 records).
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';

export async function tempDir(
  prefix: string,
): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `ferry-${prefix}-`));
  return { path, [Symbol.asyncDispose]: () => rm(path, { recursive: true, force: true }) };
}

export async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address() as AddressInfo;
  return `http://127.0.0.1:${address.port}`;
}

export const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

export const random = (size: number): Buffer => randomBytes(size);

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every file and directory under root, as '/'-separated relative paths (dirs end in '/'). */
export async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const rel = relative(root, join(entry.parentPath, entry.name)).split('\\').join('/');
    out.push(entry.isDirectory() ? `${rel}/` : rel);
  }
  return out.sort();
}

/** A lazily generated stream of `size` bytes where byte i is `i % 251` (or all zeros). */
export function synthetic(size: number, start = 0, zeros = false): Readable {
  const CHUNK = 1024 * 1024;
  const zeroChunk = Buffer.alloc(CHUNK);
  let pos = start;
  const end = start + size;
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (pos >= end) {
        this.push(null);
        return;
      }
      const n = Math.min(CHUNK, end - pos);
      if (zeros) {
        this.push(n === CHUNK ? zeroChunk : zeroChunk.subarray(0, n));
      } else {
        const buf = Buffer.allocUnsafe(n);
        for (let i = 0; i < n; i++) buf[i] = (pos + i) % 251;
        this.push(buf);
      }
      pos += n;
    },
  });
}

export interface CentralEntry {
  name: string;
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
  zip64Extra: boolean;
}

export interface CentralDirectory {
  entries: CentralEntry[];
  zip64Eocd: boolean;
}

/** Reads the central directory from the tail of an archive (the tail must contain it all). */
export function readCentralDirectory(tail: Buffer, archiveLength = tail.length): CentralDirectory {
  const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('no end of central directory record');
  let count = tail.readUInt16LE(eocd + 10);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const zip64Eocd = eocd >= 20 && tail.readUInt32LE(eocd - 20) === 0x07064b50;
  if (zip64Eocd) {
    const recordOffset = Number(tail.readBigUInt64LE(eocd - 20 + 8));
    const record = recordOffset - (archiveLength - tail.length);
    if (tail.readUInt32LE(record) !== 0x06064b50) throw new Error('bad zip64 end of central directory');
    count = Number(tail.readBigUInt64LE(record + 32));
    cdOffset = Number(tail.readBigUInt64LE(record + 48));
  }
  let p = cdOffset - (archiveLength - tail.length);
  const entries: CentralEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (tail.readUInt32LE(p) !== 0x02014b50) throw new Error(`bad central directory record at ${p}`);
    const nameLength = tail.readUInt16LE(p + 28);
    const extraLength = tail.readUInt16LE(p + 30);
    const commentLength = tail.readUInt16LE(p + 32);
    const entry: CentralEntry = {
      name: tail.toString('utf8', p + 46, p + 46 + nameLength),
      flags: tail.readUInt16LE(p + 8),
      method: tail.readUInt16LE(p + 10),
      crc32: tail.readUInt32LE(p + 16),
      compressedSize: tail.readUInt32LE(p + 20),
      uncompressedSize: tail.readUInt32LE(p + 24),
      localHeaderOffset: tail.readUInt32LE(p + 42),
      zip64Extra: false,
    };
    let x = p + 46 + nameLength;
    const extraEnd = x + extraLength;
    while (x + 4 <= extraEnd) {
      const id = tail.readUInt16LE(x);
      const size = tail.readUInt16LE(x + 2);
      if (id === 0x0001) {
        entry.zip64Extra = true;
        entry.uncompressedSize = Number(tail.readBigUInt64LE(x + 4));
        entry.compressedSize = Number(tail.readBigUInt64LE(x + 12));
        entry.localHeaderOffset = Number(tail.readBigUInt64LE(x + 20));
      }
      x += 4 + size;
    }
    entries.push(entry);
    p = extraEnd + commentLength;
  }
  return { entries, zip64Eocd };
}

/** Splits a multipart/byteranges body into its parts. */
export function parseMultipart(
  body: Buffer,
  boundary: string,
): { headers: Record<string, string>; data: Buffer }[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: { headers: Record<string, string>; data: Buffer }[] = [];
  let pos = body.indexOf(delimiter);
  if (pos < 0) throw new Error('no boundary');
  for (;;) {
    pos += delimiter.length;
    if (body.toString('latin1', pos, pos + 2) === '--') break; // closing delimiter
    if (body.toString('latin1', pos, pos + 2) !== '\r\n') throw new Error('bad delimiter line');
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    const headers: Record<string, string> = {};
    for (const line of body.toString('latin1', pos + 2, headerEnd).split('\r\n')) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`), headerEnd + 4);
    if (next < 0) throw new Error('unterminated part');
    parts.push({ headers, data: body.subarray(headerEnd + 4, next) });
    pos = next + 2;
  }
  return parts;
}
