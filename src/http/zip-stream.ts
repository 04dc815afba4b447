// Streams a zip archive of many stored files, written here (stored entries only, so the
// format is small) with Node's native zlib.crc32: a pure-JS CRC and a chain of Transform
// streams per entry used to cap this at ~300 MiB/s and far less for many small files.
//
// - Entries are stored, not deflated. Downloads are mostly already-compressed media (video,
//   audio, images, archives) where deflate buys ~nothing and costs a lot of CPU; stored entries
//   also make the archive length exactly computable up front (zipLength), so the endpoint can
//   send Content-Length and clients show real progress.
// - Output goes out in chunks of up to 1 MiB packing headers and file bytes together; entries
//   with a positional reader (local disk) are read straight into them. A thousand 100 KiB files
//   took five socket writes and five thread-pool round trips each before; see writeZip.
// - Stream entries are opened lazily, one at a time, only when the writer reaches them, and the
//   next one only after the previous stream has closed. Reader entries are opened at most
//   READERS_AHEAD ahead, so their opens overlap the writing; all are closed on any failure.
// - Names are UTF-8 with the language-encoding flag (general purpose bit 11).
// - ZIP64 records are used automatically for entries/offsets past 4 GiB (or forced, for tests).
// - The CRC is unknown until the data has passed, so every file entry has bit 3 set, zero
//   CRC/sizes in its local header and a data descriptor after its data; the central directory
//   has them all. Each central record carries an Info-ZIP "UT" mtime. (Byte for byte the layout
//   yazl 3 wrote before, so readers see nothing new.)
// - Any error (open failure, read error, size mismatch, abort) destroys the output stream, so
//   the client sees a truncated download instead of a silently corrupt archive.
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import type { BlobReader } from '../storage/port.ts';
import { giveBack, POOLED_CHUNK, takeBuffer } from './buffer-pool.ts';

export interface ZipFileEntry {
  /** '/'-separated, relative. Sanitised before use; see ZipNamer. */
  path: string;
  size: number;
  modifiedAt: Date;
  folder?: false;
  open(): Promise<Readable>;
  /**
   * A positional reader of the same bytes, when the storage has one: the archive reads straight
   * into its output buffers, and opens a few entries ahead (see READERS_AHEAD).
   */
  openReader?(): Promise<BlobReader>;
  /** The bytes' CRC-32 when already known (stored with the blob): they are not hashed again. */
  crc32?: number;
}

export interface ZipFolderEntry {
  path: string;
  folder: true;
  modifiedAt: Date;
}

export type ZipEntry = ZipFileEntry | ZipFolderEntry;

/** What zipLength needs: an entry without the ability to open it. */
export type ZipEntryInfo = Omit<ZipFileEntry, 'open'> | ZipFolderEntry;

export interface ZipOptions {
  /** Aborting destroys the output stream (with the signal's reason) and the open entry. */
  signal?: AbortSignal;
  /** Write ZIP64 records even when not needed (testing / reader compatibility checks). */
  forceZip64?: boolean;
}

const FILE_MODE = 0o100644;
const DIR_MODE = 0o40755;
const MAX_SEGMENT_BYTES = 255;

const LOCAL_HEADER = 30;
const DATA_DESCRIPTOR = 16;
const ZIP64_DATA_DESCRIPTOR = 24;
const CENTRAL_RECORD = 46;
const UT_EXTRA = 9;
const ZIP64_EXTRA = 28;
const EOCD = 22;
const ZIP64_EOCD = 56;
const ZIP64_LOCATOR = 20;
const FLAG_UTF8 = 1 << 11;
const FLAG_DATA_DESCRIPTOR = 1 << 3;
const VERSION_UTF8 = 20;
const VERSION_ZIP64 = 45;
const VERSION_MADE_BY = (3 << 8) | 63; // Unix, spec 6.3
const MAX_32 = 0xfffffffe;

interface Written {
  name: Buffer;
  isDir: boolean;
  zip64: boolean;
  offset: number;
  size: number;
  crc: number;
  dosTime: number;
  dosDate: number;
  unixTime: number;
}

/** Where writeZip sends the archive. */
export interface ZipSink {
  /**
   * Takes the next chunk of the archive and calls `done` once it has been handed on (an HTTP
   * response: the socket's write callback). The chunk's memory goes back to the writer's
   * ChunkSource after `done` (with the default one, the chunk is the sink's to keep).
   */
  write(chunk: Buffer, done: (error?: Error | null) => void): void;
}

/** Where the writer's output buffers come from, and go back to once a sink is done with them. */
export interface ChunkSource {
  take(): Buffer;
  giveBack(chunk: Buffer): void;
}

/** Fresh buffers, never reused: the sink keeps every chunk (the Readable adapter). */
const FRESH_CHUNKS: ChunkSource = { take: () => Buffer.allocUnsafeSlow(POOLED_CHUNK), giveBack: () => {} };

/** The process's shared pool: the sink must be done with a chunk (socket written) before `done`. */
export const POOLED_CHUNKS: ChunkSource = { take: () => takeBuffer(), giveBack };

export interface WriteZipOptions extends ZipOptions {
  /** Default: fresh buffers the sink may keep. */
  chunks?: ChunkSource;
  /** Called with each CRC-32 the writer computed (entries without `crc32`, once fully written). */
  onCrc?: (entry: ZipFileEntry, crc: number) => void;
}

/**
 * Chunks handed to the sink and not yet done, while the next fills. With 2 a 100 MB archive of
 * small files took ~100 ms through the worker, with 4 ~85 ms (the round trips overlap).
 */
const IN_FLIGHT = 4;
/** Positional readers opened ahead of the writer, so their opens overlap its work. */
const READERS_AHEAD = 4;

/**
 * Writes the archive of `entries` to `sink` in chunks of up to 1 MiB: headers, descriptors and
 * file bytes are packed into the same buffers (file bytes are read straight into them when the
 * entry has `openReader`), so a thousand small files cost a few dozen socket writes. Resolves
 * when the last chunk is done; rejects on the first error (open, read, size mismatch, abort,
 * a failed sink write), after which the sink gets nothing more.
 */
export async function writeZip(
  entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>,
  sink: ZipSink,
  options: WriteZipOptions = {},
): Promise<void> {
  const writer = new ArchiveWriter(sink, options);
  try {
    await writer.run(entries);
  } catch (error) {
    // The first failure wins: an abort's reason, not the premature-close error it causes.
    throw writer.stop(error instanceof Error ? error : new Error(String(error)));
  } finally {
    await writer.released();
  }
}

interface Ahead {
  entry: ZipEntry;
  /** The entry's reader, opening; never rejects unhandled (a no-op catch is attached). */
  reader?: Promise<BlobReader>;
}

class ArchiveWriter {
  readonly #sink: ZipSink;
  readonly #chunks: ChunkSource;
  readonly #onCrc: WriteZipOptions['onCrc'];
  readonly #forceZip64: boolean;
  readonly #signal: AbortSignal | undefined;
  #buffer: Buffer;
  #fill = 0;
  /** Archive bytes so far (sent and buffered): the next entry's offset. */
  #cursor = 0;
  #inFlight = 0;
  #wake: (() => void) | null = null;
  #failure: Error | null = null;
  /** A stream entry being copied, destroyed by stop(). */
  #stream: Readable | null = null;
  /** Readers opened ahead and not yet reached. */
  readonly #ahead: Ahead[] = [];
  /** Closes of readers and streams still settling; released() waits for them. */
  readonly #closing = new Set<Promise<unknown>>();

  constructor(sink: ZipSink, options: WriteZipOptions) {
    this.#sink = sink;
    this.#chunks = options.chunks ?? FRESH_CHUNKS;
    this.#onCrc = options.onCrc;
    this.#forceZip64 = options.forceZip64 ?? false;
    this.#signal = options.signal;
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#buffer = this.#newBuffer();
  }

  readonly #onAbort = (): void => {
    const reason: unknown = this.#signal?.reason;
    this.stop(reason instanceof Error ? reason : new Error('aborted'));
  };

  #newBuffer(): Buffer {
    return this.#chunks.take();
  }

  #check(): void {
    if (this.#failure !== null) throw this.#failure;
    if (this.#signal?.aborted) {
      const reason: unknown = this.#signal.reason;
      throw (this.#failure = reason instanceof Error ? reason : new Error('aborted'));
    }
  }

  /** Stops everything in flight (the stream entry, readers opened ahead); the first failure. */
  stop(error: Error): Error {
    this.#failure ??= error;
    this.#stream?.destroy();
    this.#stream = null;
    for (const { reader } of this.#ahead.splice(0)) if (reader) this.#closeLater(reader);
    this.#wakeUp();
    return this.#failure;
  }

  /** Settles once every reader and stream this writer opened is closed. */
  async released(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    while (this.#closing.size > 0) await Promise.all([...this.#closing]);
  }

  #closeLater(reader: Promise<BlobReader> | BlobReader): void {
    const closing = Promise.resolve(reader)
      .then((r) => r.close())
      .catch(() => undefined)
      .finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Sends the filled part of the buffer and (unless last) starts a new one, waiting while the sink is behind. */
  async #flush(last = false): Promise<void> {
    this.#check();
    if (this.#fill === 0) return;
    const sent = this.#buffer;
    const chunk = this.#fill === sent.length ? sent : sent.subarray(0, this.#fill);
    this.#inFlight++;
    this.#sink.write(chunk, (error) => {
      this.#inFlight--;
      if (error) this.#failure ??= error;
      else this.#chunks.giveBack(sent);
      this.#wakeUp();
    });
    this.#fill = 0;
    while (this.#inFlight >= IN_FLIGHT && this.#failure === null) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    this.#check();
    if (!last) this.#buffer = this.#newBuffer();
  }

  async #put(bytes: Buffer): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      if (this.#fill === this.#buffer.length) await this.#flush();
      const n = bytes.copy(this.#buffer, this.#fill, at);
      this.#fill += n;
      at += n;
    }
    this.#cursor += bytes.length;
  }

  async run(entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>): Promise<void> {
    this.#check();
    const iterator =
      Symbol.asyncIterator in entries ? entries[Symbol.asyncIterator]() : entries[Symbol.iterator]();
    let exhausted = false;
    /** Pulls entries into #ahead until READERS_AHEAD readers are opening (or no entries left). */
    const lookAhead = async (): Promise<void> => {
      while (!exhausted && this.#ahead.filter((a) => a.reader !== undefined).length < READERS_AHEAD) {
        const next = await iterator.next();
        this.#check();
        if (next.done === true) {
          exhausted = true;
          return;
        }
        const entry = next.value;
        const item: Ahead = { entry };
        if (entry.folder !== true && entry.openReader && entry.size > 0) {
          item.reader = entry.openReader();
          item.reader.catch(() => undefined);
        }
        this.#ahead.push(item);
        if (!item.reader) return; // a stream entry or folder: nothing more to overlap yet
      }
    };
    const namer = new ZipNamer();
    const written: Written[] = [];
    try {
      for (;;) {
        if (this.#ahead.length === 0) await lookAhead();
        const item = this.#ahead.shift();
        if (item === undefined) break;
        await this.#entry(item, namer, written);
        await lookAhead();
      }
    } finally {
      if (!exhausted) void Promise.resolve(iterator.return?.()).catch(() => undefined);
    }
    const cdStart = this.#cursor;
    for (const w of written) await this.#put(centralRecord(w));
    await this.#put(endRecords(written.length, cdStart, this.#cursor - cdStart, this.#forceZip64));
    await this.#flush(true);
    while (this.#inFlight > 0 && this.#failure === null) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    this.#check();
  }

  async #entry({ entry, reader }: Ahead, namer: ZipNamer, written: Written[]): Promise<void> {
    const name = namer.name(entry);
    if (name === undefined) {
      if (reader) this.#closeLater(reader);
      return;
    }
    const isDir = entry.folder === true;
    const nameBytes = Buffer.from(isDir ? `${name}/` : name);
    if (nameBytes.length > 0xffff) {
      if (reader) this.#closeLater(reader);
      throw new Error('file name too long');
    }
    const size = isDir ? 0 : entry.size;
    const { time, date } = dosDateTime(entry.modifiedAt);
    const w: Written = {
      name: nameBytes,
      isDir,
      zip64: (this.#forceZip64 && !isDir) || size > MAX_32 || this.#cursor > MAX_32,
      offset: this.#cursor,
      size,
      crc: 0,
      dosTime: time,
      dosDate: date,
      unixTime: Math.floor(entry.modifiedAt.getTime() / 1000),
    };
    written.push(w);
    try {
      await this.#put(localHeader(w));
      // The first header goes out alone, at once: the response starts (and a later failure
      // reaches the client as a broken download) without waiting for a full buffer.
      if (written.length === 1) await this.#flush();
    } catch (error) {
      if (reader) this.#closeLater(reader);
      throw error;
    }
    if (entry.folder === true) return;
    const known = entry.crc32;
    if (reader) w.crc = await this.#copyReader(reader, size, known);
    else if (entry.openReader && size === 0)
      w.crc = 0; // nothing to read: nothing opened
    else w.crc = await this.#copyStream(entry, size, known);
    await this.#put(dataDescriptor(w));
    if (known === undefined && size > 0) this.#onCrc?.(entry, w.crc);
  }

  /** Reads `size` bytes of a positional reader straight into the output buffers; the CRC-32. */
  async #copyReader(opening: Promise<BlobReader>, size: number, known: number | undefined): Promise<number> {
    let reader: BlobReader;
    try {
      reader = await opening;
    } catch (error) {
      this.#check();
      throw error;
    }
    let crc = 0;
    try {
      this.#check();
      for (let position = 0; position < size;) {
        if (this.#fill === this.#buffer.length) await this.#flush();
        const want = Math.min(size - position, this.#buffer.length - this.#fill);
        const target = this.#buffer.subarray(this.#fill, this.#fill + want);
        const n = await reader.read(target, want, position);
        this.#check();
        if (n <= 0) throw new Error('file data stream has unexpected number of bytes');
        if (known === undefined) crc = crc32(n === want ? target : target.subarray(0, n), crc);
        this.#fill += n;
        this.#cursor += n;
        position += n;
      }
    } finally {
      this.#closeLater(reader);
    }
    return known ?? crc >>> 0;
  }

  /** Copies a stream entry (one open at a time: the previous one has closed); the CRC-32. */
  async #copyStream(entry: ZipFileEntry, size: number, known: number | undefined): Promise<number> {
    const stream = await entry.open();
    if (this.#failure !== null || this.#signal?.aborted) {
      stream.destroy();
      this.#check();
    }
    this.#stream = stream;
    const closed = finished(stream).catch(() => undefined);
    let crc = 0;
    let bytes = 0;
    try {
      // for-await destroys the stream when we leave early, and rethrows its errors.
      for await (const chunk of stream as AsyncIterable<Buffer | string>) {
        this.#check();
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        if (known === undefined) crc = crc32(buf, crc);
        bytes += buf.length;
        if (bytes > size) throw new Error('file data stream has unexpected number of bytes');
        await this.#put(buf);
      }
    } finally {
      if (this.#stream === stream) this.#stream = null;
      stream.destroy();
      await closed;
    }
    this.#check();
    if (bytes !== size) throw new Error('file data stream has unexpected number of bytes');
    return known ?? crc >>> 0;
  }
}

/**
 * The archive as a Readable (for callers that pipe, and the tests). Any error destroys it, so
 * a consumer sees a truncated archive, never a silently corrupt one.
 */
export function zipStream(
  entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>,
  options: ZipOptions = {},
): Readable {
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  /** `done` callbacks of chunks pushed past the high-water mark, called when it reads again. */
  let behind: Array<() => void> = [];
  const out = new Readable({
    highWaterMark: 256 * 1024,
    read() {
      const waiting = behind;
      behind = [];
      for (const done of waiting) done();
    },
    destroy(error, callback) {
      // The consumer went away (client abort) or the archive failed: stop the writer.
      if (!controller.signal.aborted) controller.abort(error ?? new Error('zip output closed'));
      callback(error);
    },
  });
  const sink: ZipSink = {
    write(chunk, done) {
      if (out.destroyed) return done(new Error('zip output closed'));
      if (out.push(chunk)) done();
      else behind.push(() => done());
    },
  };
  writeZip(entries, sink, { ...options, signal }).then(
    () => out.push(null),
    (error: unknown) => out.destroy(error instanceof Error ? error : new Error(String(error))),
  );
  return out;
}

function localHeader(w: Written): Buffer {
  const b = Buffer.alloc(LOCAL_HEADER + w.name.length);
  b.writeUInt32LE(0x04034b50, 0);
  b.writeUInt16LE(VERSION_UTF8, 4);
  b.writeUInt16LE(w.isDir ? FLAG_UTF8 : FLAG_UTF8 | FLAG_DATA_DESCRIPTOR, 6);
  b.writeUInt16LE(0, 8); // stored
  b.writeUInt16LE(w.dosTime, 10);
  b.writeUInt16LE(w.dosDate, 12);
  // crc, compressed and uncompressed size: 0 here, in the data descriptor / central record
  b.writeUInt16LE(w.name.length, 26);
  b.writeUInt16LE(0, 28);
  w.name.copy(b, LOCAL_HEADER);
  return b;
}

function dataDescriptor(w: Written): Buffer {
  const b = Buffer.alloc(w.zip64 ? ZIP64_DATA_DESCRIPTOR : DATA_DESCRIPTOR);
  b.writeUInt32LE(0x08074b50, 0);
  b.writeUInt32LE(w.crc, 4);
  if (w.zip64) {
    b.writeBigUInt64LE(BigInt(w.size), 8);
    b.writeBigUInt64LE(BigInt(w.size), 16);
  } else {
    b.writeUInt32LE(w.size, 8);
    b.writeUInt32LE(w.size, 12);
  }
  return b;
}

function centralRecord(w: Written): Buffer {
  const extra = UT_EXTRA + (w.zip64 ? ZIP64_EXTRA : 0);
  const b = Buffer.alloc(CENTRAL_RECORD + w.name.length + extra);
  b.writeUInt32LE(0x02014b50, 0);
  b.writeUInt16LE(VERSION_MADE_BY, 4);
  b.writeUInt16LE(w.zip64 ? VERSION_ZIP64 : VERSION_UTF8, 6);
  b.writeUInt16LE(w.isDir ? FLAG_UTF8 : FLAG_UTF8 | FLAG_DATA_DESCRIPTOR, 8);
  b.writeUInt16LE(0, 10); // stored
  b.writeUInt16LE(w.dosTime, 12);
  b.writeUInt16LE(w.dosDate, 14);
  b.writeUInt32LE(w.crc, 16);
  b.writeUInt32LE(w.zip64 ? 0xffffffff : w.size, 20);
  b.writeUInt32LE(w.zip64 ? 0xffffffff : w.size, 24);
  b.writeUInt16LE(w.name.length, 28);
  b.writeUInt16LE(extra, 30);
  // comment length, disk number, internal attributes: 0
  b.writeUInt32LE(((w.isDir ? DIR_MODE : FILE_MODE) << 16) >>> 0, 38);
  b.writeUInt32LE(w.zip64 ? 0xffffffff : w.offset, 42);
  let at = CENTRAL_RECORD;
  at += w.name.copy(b, at);
  // Info-ZIP universal timestamp: mtime (the atime flag set too, as Info-ZIP does).
  b.writeUInt16LE(0x5455, at);
  b.writeUInt16LE(UT_EXTRA - 4, at + 2);
  b.writeUInt8(0b11, at + 4);
  b.writeInt32LE(Math.min(Math.max(w.unixTime, -0x80000000), 0x7fffffff), at + 5);
  at += UT_EXTRA;
  if (w.zip64) {
    b.writeUInt16LE(0x0001, at);
    b.writeUInt16LE(ZIP64_EXTRA - 4, at + 2);
    b.writeBigUInt64LE(BigInt(w.size), at + 4);
    b.writeBigUInt64LE(BigInt(w.size), at + 12);
    b.writeBigUInt64LE(BigInt(w.offset), at + 20);
  }
  return b;
}

function endRecords(count: number, cdStart: number, cdSize: number, force: boolean): Buffer {
  const zip64 = force || count >= 0xffff || cdSize >= 0xffffffff || cdStart >= 0xffffffff;
  const eocd = Buffer.alloc(EOCD);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(zip64 ? 0xffff : count, 8);
  eocd.writeUInt16LE(zip64 ? 0xffff : count, 10);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : cdSize, 12);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : cdStart, 16);
  if (!zip64) return eocd;
  const record = Buffer.alloc(ZIP64_EOCD);
  record.writeUInt32LE(0x06064b50, 0);
  record.writeBigUInt64LE(BigInt(ZIP64_EOCD - 12), 4);
  record.writeUInt16LE(VERSION_MADE_BY, 12);
  record.writeUInt16LE(VERSION_ZIP64, 14);
  record.writeBigUInt64LE(BigInt(count), 24);
  record.writeBigUInt64LE(BigInt(count), 32);
  record.writeBigUInt64LE(BigInt(cdSize), 40);
  record.writeBigUInt64LE(BigInt(cdStart), 48);
  const locator = Buffer.alloc(ZIP64_LOCATOR);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(cdStart + cdSize), 8);
  locator.writeUInt32LE(1, 16);
  return Buffer.concat([record, locator, eocd]);
}

// DOS times are local time, clamped to what the format can hold (as every zip writer does).
const MIN_DOS = new Date(1980, 0, 1);
const MAX_DOS = new Date(2107, 11, 31, 23, 59, 58);

function dosDateTime(input: Date): { time: number; date: number } {
  let d = input;
  if (!(d.getTime() >= MIN_DOS.getTime())) d = MIN_DOS;
  else if (d > MAX_DOS) d = MAX_DOS;
  return {
    date: (d.getDate() & 0x1f) | (((d.getMonth() + 1) & 0xf) << 5) | (((d.getFullYear() - 1980) & 0x7f) << 9),
    time: Math.floor(d.getSeconds() / 2) | ((d.getMinutes() & 0x3f) << 5) | ((d.getHours() & 0x1f) << 11),
  };
}

/**
 * The exact byte length zipStream will produce for these entries (same names, same options),
 * so an endpoint can send Content-Length. The tests compare it with real archives, including
 * the ZIP64 cases.
 */
export function zipLength(
  entries: Iterable<ZipEntryInfo>,
  options: Pick<ZipOptions, 'forceZip64'> = {},
): number {
  const force = options.forceZip64 ?? false;
  const namer = new ZipNamer();
  let cursor = 0;
  let centralDirectory = 0;
  let count = 0;
  for (const entry of entries) {
    const name = namer.name(entry);
    if (name === undefined) continue;
    const isDir = entry.folder === true;
    const nameBytes = Buffer.byteLength(isDir ? `${name}/` : name);
    const size = isDir ? 0 : entry.size;
    const zip64 = (force && !isDir) || size > MAX_32 || cursor > MAX_32;
    cursor += LOCAL_HEADER + nameBytes;
    if (!isDir) cursor += size + (zip64 ? ZIP64_DATA_DESCRIPTOR : DATA_DESCRIPTOR);
    centralDirectory += CENTRAL_RECORD + nameBytes + UT_EXTRA + (zip64 ? ZIP64_EXTRA : 0);
    count++;
  }
  let end = EOCD;
  if (force || count >= 0xffff || centralDirectory >= 0xffffffff || cursor >= 0xffffffff)
    end += ZIP64_EOCD + ZIP64_LOCATOR;
  return cursor + centralDirectory + end;
}

/**
 * Turns caller paths into safe, unique archive names:
 * - '/'-separated; empty, '.' and '..' segments are dropped (no leading '/', no traversal);
 * - backslashes, control characters and bidi formatting characters become '_';
 * - a leading drive letter ('C:') loses its colon; segments are cut to 255 UTF-8 bytes;
 * - names are unique case-insensitively (so extraction on Windows/macOS loses nothing): a
 *   later clash gets ' (1)', ' (2)'... before its extension. Repeated folders are merged.
 */
export class ZipNamer {
  /** lower-cased assigned path → what occupies it */
  private readonly used = new Map<string, 'file' | 'dir'>();
  /** lower-cased cleaned original directory path → its assigned path */
  private readonly dirs = new Map<string, string>();
  private readonly explicitDirs = new Set<string>();

  /** The archive name for an entry (folders without trailing '/'), or undefined to skip it. */
  name(entry: ZipEntryInfo): string | undefined {
    const segments = cleanPath(entry.path);
    if (entry.folder === true) {
      if (segments.length === 0) return undefined;
      const dir = this.resolveDirs(segments);
      const key = keyOf(dir);
      if (this.explicitDirs.has(key)) return undefined;
      this.explicitDirs.add(key);
      return dir;
    }
    const base = segments.pop() ?? 'unnamed';
    const dir = this.resolveDirs(segments);
    let name = join(dir, base);
    for (let n = 1; this.used.has(keyOf(name)); n++) name = join(dir, withSuffix(base, n, false));
    this.used.set(keyOf(name), 'file');
    return name;
  }

  private resolveDirs(segments: string[]): string {
    let assigned = '';
    let originalKey = '';
    for (const segment of segments) {
      originalKey += `/${keyOf(segment)}`;
      let dir = this.dirs.get(originalKey);
      if (dir === undefined) {
        dir = join(assigned, segment);
        for (let n = 1; this.used.get(keyOf(dir)) === 'file'; n++) {
          dir = join(assigned, withSuffix(segment, n, true));
        }
        this.used.set(keyOf(dir), 'dir');
        this.dirs.set(originalKey, dir);
      }
      assigned = dir;
    }
    return assigned;
  }
}

const UNSAFE_IN_NAME = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\\]/gu;

function cleanPath(path: string): string[] {
  const segments: string[] = [];
  for (const raw of path.toWellFormed().split('/')) {
    const segment = raw.replace(UNSAFE_IN_NAME, '_');
    if (segment === '' || segment === '.' || segment === '..') continue;
    segments.push(truncateUtf8(segment, MAX_SEGMENT_BYTES));
  }
  const first = segments[0];
  if (first !== undefined && /^[A-Za-z]:/.test(first)) segments[0] = `${first[0] ?? ''}_${first.slice(2)}`;
  return segments;
}

function truncateUtf8(segment: string, maxBytes: number): string {
  if (Buffer.byteLength(segment) <= maxBytes) return segment;
  const dot = segment.lastIndexOf('.');
  const ext = dot > 0 && Buffer.byteLength(segment.slice(dot)) <= 32 ? segment.slice(dot) : '';
  let budget = maxBytes - Buffer.byteLength(ext);
  let out = '';
  for (const ch of segment.slice(0, segment.length - ext.length)) {
    budget -= Buffer.byteLength(ch);
    if (budget < 0) break;
    out += ch;
  }
  return out + ext;
}

function withSuffix(name: string, n: number, isDir: boolean): string {
  const dot = isDir ? -1 : name.lastIndexOf('.');
  return dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`;
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function keyOf(path: string): string {
  return path.normalize('NFC').toLowerCase();
}
