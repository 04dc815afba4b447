// A raw TCP origin on 127.0.0.1 for answers node:http refuses to produce: response headers of
// any size (or headers that never end). Every request gets the same scripted answer.
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { contentRange } from '../helpers/origin.ts';

export interface RawBehaviour {
  /** Body size (generated content of `seed`). */
  size: number;
  seed: number;
  /** Extra header bytes: one header of this many bytes, or `count` headers of `each` bytes. */
  junk?: { count: number; each: number };
  /** Keep sending header lines forever (bounded by `maxHeaderBytes` of junk, then close). */
  endlessHeaders?: { maxBytes: number };
}

export interface RawOrigin {
  url(path: string): string;
  set(behaviour: RawBehaviour): void;
  requests(): number;
  /** Header bytes written in total (to check the client stopped reading an endless head). */
  headerBytes(): number;
  close(): Promise<void>;
}

export async function startRawOrigin(initial: RawBehaviour): Promise<RawOrigin> {
  let behaviour = initial;
  let requests = 0;
  let headerBytes = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      while (buffered.includes('\r\n\r\n')) {
        const end = buffered.indexOf('\r\n\r\n');
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        requests++;
        void answer(socket, head).catch(() => socket.destroy());
      }
    });
  });

  const answer = async (socket: Socket, head: string): Promise<void> => {
    const b = behaviour;
    const range = /\r\nrange:\s*bytes=(\d+)-(\d*)/i.exec(head);
    let start = 0;
    let end = b.size;
    let status = '200 OK';
    const lines = ['Accept-Ranges: bytes', 'Content-Type: application/octet-stream', 'ETag: "raw-1"'];
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(b.size, Number(range[2]) + 1) : b.size;
      status = '206 Partial Content';
      lines.push(`Content-Range: bytes ${start}-${end - 1}/${b.size}`);
    }
    lines.push(`Content-Length: ${end - start}`);
    const write = async (text: string | Buffer): Promise<boolean> => {
      if (socket.destroyed) return false;
      if (!socket.write(text)) await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
      return !socket.destroyed;
    };
    const statusLine = `HTTP/1.1 ${status}\r\n${lines.join('\r\n')}\r\n`;
    headerBytes += statusLine.length;
    await write(statusLine);
    if (b.endlessHeaders) {
      let sent = 0;
      let i = 0;
      while (sent < b.endlessHeaders.maxBytes) {
        const line = `X-Endless-${i++}: ${'e'.repeat(1000)}\r\n`;
        sent += line.length;
        headerBytes += line.length;
        if (!(await write(line))) return;
      }
      socket.destroy();
      return;
    }
    if (b.junk) {
      for (let i = 0; i < b.junk.count; i++) {
        const line = `X-Junk-${i}: ${'j'.repeat(b.junk.each)}\r\n`;
        headerBytes += line.length;
        if (!(await write(line))) return;
      }
    }
    if (!(await write('\r\n'))) return;
    for (let pos = start; pos < end; pos += 256 * 1024) {
      if (!(await write(contentRange(b.seed, pos, Math.min(end, pos + 256 * 1024))))) return;
    }
  };

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    set: (next) => {
      behaviour = next;
      requests = 0;
      headerBytes = 0;
    },
    requests: () => requests,
    headerBytes: () => headerBytes,
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
