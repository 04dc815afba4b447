// A loopback TCP proxy that can be cut and restored: the database-unreachable fault. `cut('reset')`
// destroys every open connection and resets new ones (the database host is down);
// `cut('blackhole')` keeps sockets open but forwards nothing (a network partition).
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpProxy {
  port: number;
  cut(mode: 'reset' | 'blackhole'): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let mode: 'open' | 'reset' | 'blackhole' = 'open';
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const server = createServer((client) => {
    client.on('error', () => undefined);
    if (mode === 'reset') {
      client.resetAndDestroy();
      return;
    }
    if (mode === 'blackhole') {
      // Accept and say nothing; the peer only finds out through its own timeouts.
      client.pause();
      const drop = () => client.destroy();
      client.once('close', drop);
      pairs.add({ client, upstream: client });
      return;
    }
    const upstream = connect(targetPort, targetHost);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    const pair = { client, upstream };
    pairs.add(pair);
    const forget = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.once('close', forget);
    upstream.once('close', forget);
    client.on('data', (d: Buffer) => {
      if (mode === 'open') upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (mode === 'open') client.write(d);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    cut(next) {
      mode = next;
      if (next === 'reset') {
        for (const { client, upstream } of pairs) {
          client.resetAndDestroy();
          upstream.destroy();
        }
        pairs.clear();
      }
    },
    restore() {
      // Connections that lived through a blackhole lost bytes in both directions: drop them.
      if (mode === 'blackhole') {
        for (const { client, upstream } of pairs) {
          client.resetAndDestroy();
          upstream.destroy();
        }
        pairs.clear();
      }
      mode = 'open';
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
