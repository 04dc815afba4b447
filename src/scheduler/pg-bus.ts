// The scaled-out nodes' signal bus on PostgreSQL LISTEN/NOTIFY: one dedicated connection per
// process that listens and also sends, so a process can recognise (and skip) its own signals.
//   ferry_task_control  '{"op":"cancel","id":7}'  a cancel or a file selection for whoever runs task 7
//   ferry_task_changed  '7'                        task 7 changed: API nodes re-read it and emit it locally
//   ferry_task_queued   '<queue name>'             a job was sent: nodes working that queue fetch now
// Signals are latency hints over state already written to the database; a lost one costs at
// most a polling interval (queued) or a progress tick (changed). Controls are not retried.
import pg from 'pg';
import type { TaskControl } from '../services/tasks.service.ts';

export const CHANNELS = {
  control: 'ferry_task_control',
  changed: 'ferry_task_changed',
  queued: 'ferry_task_queued',
} as const;

/** NOTIFY payloads must stay under 8000 bytes. */
const MAX_PAYLOAD = 7900;

export interface BusHandlers {
  control?(message: TaskControl): void;
  changed?(taskIds: number[]): void;
  queued?(queue: string): void;
  /** The listener (re)connected: signals sent meanwhile were missed. */
  reconnected?(): void;
}

export class PgBus {
  private readonly url: string;
  private readonly handlers: BusHandlers;
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  /** Changed task ids waiting to be sent (coalesced per tick). */
  private readonly outgoing = new Set<number>();
  private flushing = false;
  /** Changed task ids received, handed over in one batch per tick. */
  private readonly incoming = new Set<number>();
  private incomingTimer: NodeJS.Timeout | undefined;

  constructor(url: string, handlers: BusHandlers) {
    this.url = url;
    this.handlers = handlers;
  }

  async start(): Promise<void> {
    await this.connect();
  }

  private connect(): Promise<void> {
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, application_name: 'ferry-bus' });
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    client.on('notification', (msg) => {
      if (msg.processId === (client as unknown as { processID?: number }).processID) return; // our own signal: already acted on here
      this.receive(msg.channel, msg.payload ?? '');
    });
    await client.connect();
    const channels: string[] = [];
    if (this.handlers.control) channels.push(CHANNELS.control);
    if (this.handlers.changed) channels.push(CHANNELS.changed);
    if (this.handlers.queued) channels.push(CHANNELS.queued);
    for (const channel of channels) await client.query(`LISTEN ${channel}`);
    this.client = client;
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => undefined);
    if (this.stopped) return;
    const reconnect = () => {
      this.retry = undefined;
      if (this.stopped) return;
      this.connect().then(
        () => this.handlers.reconnected?.(),
        () => (this.retry = setTimeout(reconnect, 1000)),
      );
    };
    this.retry = setTimeout(reconnect, 200);
  }

  private receive(channel: string, payload: string): void {
    try {
      if (channel === CHANNELS.control) this.handlers.control?.(JSON.parse(payload) as TaskControl);
      else if (channel === CHANNELS.queued) this.handlers.queued?.(payload);
      else if (channel === CHANNELS.changed) {
        const id = Number(payload);
        if (!Number.isSafeInteger(id)) return;
        this.incoming.add(id);
        // Coalesce a burst (many tasks progressing at once) into one re-read.
        this.incomingTimer ??= setTimeout(() => {
          this.incomingTimer = undefined;
          const ids = [...this.incoming];
          this.incoming.clear();
          this.handlers.changed?.(ids);
        }, 20);
      }
    } catch {
      // a malformed payload from someone else: ignore
    }
  }

  /** Sends one signal; a failure (database away) is reported to the caller. */
  async notify(channel: string, payload: string): Promise<void> {
    if (Buffer.byteLength(payload) > MAX_PAYLOAD) throw new Error('signal payload too large');
    if (!this.client) await this.connect();
    const client = this.client;
    if (!client) throw new Error('signal bus is not connected');
    await client.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  async control(message: TaskControl): Promise<void> {
    let payload = JSON.stringify(message);
    // A selection too large for one signal: the node re-reads the stored selection instead.
    if (Buffer.byteLength(payload) > MAX_PAYLOAD && message.op === 'select')
      payload = JSON.stringify({ op: 'select', id: message.id });
    await this.notify(CHANNELS.control, payload);
  }

  /** Queues a "task changed" signal; sends coalesced, in order, best effort. */
  changed(taskId: number): void {
    this.outgoing.add(taskId);
    if (this.flushing) return;
    this.flushing = true;
    void (async () => {
      try {
        while (this.outgoing.size && !this.stopped) {
          const ids = [...this.outgoing];
          this.outgoing.clear();
          for (const id of ids) await this.notify(CHANNELS.changed, String(id)).catch(() => undefined);
        }
      } finally {
        this.flushing = false;
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.incomingTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
