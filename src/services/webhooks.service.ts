// Webhooks: each user registers URLs to be told when a task of theirs completes, fails or is
// canceled. The body is JSON, signed with HMAC-SHA256 over `<timestamp>.<body>` with the
// webhook's secret (headers X-Ferry-Timestamp, X-Ferry-Signature: sha256=<hex>). Deliveries go
// through guardedFetch, so the outbound policy applies to the webhook URL and every redirect hop
// exactly as to downloads. A delivery is retried with backoff; its state is kept in
// webhook_deliveries (unique per webhook, task and event, so it happens once even when several
// API nodes see the event). Retries live in memory: a restart drops pending ones.
import { createHmac, randomBytes } from 'node:crypto';
import { AppError } from '../domain/errors.ts';
import type { Task } from '../domain/task.ts';
import { guardedFetch } from '../net/guarded-fetch.ts';
import { canonicalIp, isIpLiteral, normalizeHostname, type OutboundPolicy } from '../net/address-policy.ts';
import type { ServiceContext } from './context.ts';
import type { TaskEvent, TasksService } from './tasks.service.ts';

export const WEBHOOK_EVENTS = ['completed', 'failed', 'canceled'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

const MAX_WEBHOOKS_PER_USER = 10;
const ATTEMPTS = 5;
const TIMEOUT_MS = 10_000;

export interface WebhookView {
  id: number;
  url: string;
  events: WebhookEvent[];
  created_at: number;
}

export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

function eventOf(task: Task): WebhookEvent | null {
  if (task.status === 'completed') return 'completed';
  if (task.status === 'error') return 'failed';
  if (task.status === 'canceled') return 'canceled';
  return null;
}

function parseEvents(text: string): WebhookEvent[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v)
      ? v.filter((e): e is WebhookEvent => WEBHOOK_EVENTS.includes(e as WebhookEvent))
      : [];
  } catch {
    return [];
  }
}

export class WebhooksService {
  readonly #ctx: ServiceContext;
  readonly #policy: OutboundPolicy;
  readonly #tasks: TasksService;
  readonly #client: ReturnType<typeof guardedFetch>;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #baseDelayMs: number;
  #onTask: ((e: TaskEvent) => void) | null = null;

  constructor(ctx: ServiceContext, policy: OutboundPolicy, tasks: TasksService, baseDelayMs = 1000) {
    this.#ctx = ctx;
    this.#policy = policy;
    this.#tasks = tasks;
    this.#baseDelayMs = baseDelayMs;
    this.#client = guardedFetch({ policy, connectTimeoutMs: TIMEOUT_MS });
  }

  start(): void {
    this.#onTask = (e) => {
      const event = eventOf(e.task);
      if (event !== null) void this.#dispatch(e.task, event).catch(() => undefined);
    };
    this.#tasks.events.on('task', this.#onTask);
  }

  async stop(): Promise<void> {
    if (this.#onTask) this.#tasks.events.off('task', this.#onTask);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.#client.close();
  }

  async create(ownerId: number, url: string, events: string[]): Promise<WebhookView & { secret: string }> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new AppError('PARAM_INVALID', 'Webhook URL is not a valid URL');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw new AppError('PARAM_INVALID', 'Webhook URL must be http or https');
    // Checked again on every connect (guardedFetch); refusing here tells the user at once.
    const name = normalizeHostname(parsed.hostname);
    const host = isIpLiteral(name)
      ? this.#policy.checkAddress(canonicalIp(name) ?? name)
      : this.#policy.checkHost(name);
    if (!host.ok) throw new AppError('PARAM_INVALID', `Webhook URL refused: ${host.reason}`);
    const unknown = events.filter((e) => !WEBHOOK_EVENTS.includes(e as WebhookEvent));
    if (events.length === 0 || unknown.length > 0)
      throw new AppError('PARAM_INVALID', `Webhook events must be some of ${WEBHOOK_EVENTS.join(', ')}`);
    const db = this.#ctx.db;
    const count = await db
      .selectFrom('webhooks')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('owner_id', '=', ownerId)
      .executeTakeFirstOrThrow();
    if (Number(count.n) >= MAX_WEBHOOKS_PER_USER)
      throw new AppError('PARAM_INVALID', `At most ${MAX_WEBHOOKS_PER_USER} webhooks per user`);
    const secret = randomBytes(24).toString('base64url');
    const created_at = this.#ctx.clock.now();
    const unique = [...new Set(events)] as WebhookEvent[];
    const row = await db
      .insertInto('webhooks')
      .values({ owner_id: ownerId, url: parsed.href, events: JSON.stringify(unique), secret, created_at })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { id: Number(row.id), url: parsed.href, events: unique, created_at, secret };
  }

  async list(ownerId: number): Promise<WebhookView[]> {
    const rows = await this.#ctx.db
      .selectFrom('webhooks')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .execute();
    return rows.map((r) => ({
      id: Number(r.id),
      url: r.url,
      events: parseEvents(r.events),
      created_at: r.created_at,
    }));
  }

  async remove(ownerId: number, id: number): Promise<void> {
    const r = await this.#ctx.db
      .deleteFrom('webhooks')
      .where('id', '=', id)
      .where('owner_id', '=', ownerId)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw new AppError('NOT_FOUND', 'Webhook not found');
  }

  /** The delivery log of one of the user's webhooks, newest first (at most 100). */
  async deliveries(ownerId: number, id: number) {
    const hook = await this.#ctx.db
      .selectFrom('webhooks')
      .select('id')
      .where('id', '=', id)
      .where('owner_id', '=', ownerId)
      .executeTakeFirst();
    if (!hook) throw new AppError('NOT_FOUND', 'Webhook not found');
    const rows = await this.#ctx.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('webhook_id', '=', id)
      .orderBy('id', 'desc')
      .limit(100)
      .execute();
    return rows.map((r) => ({
      id: Number(r.id),
      task_id: this.#ctx.ids.encode('task', Number(r.task_id)),
      event: r.event,
      state: r.state,
      attempts: r.attempts,
      last_status: r.last_status,
      last_error: r.last_error,
      created_at: r.created_at,
      updated_at: r.updated_at,
    }));
  }

  async #dispatch(task: Task, event: WebhookEvent): Promise<void> {
    const hooks = await this.#ctx.db
      .selectFrom('webhooks')
      .selectAll()
      .where('owner_id', '=', task.owner_id)
      .execute();
    for (const hook of hooks) {
      if (!parseEvents(hook.events).includes(event)) continue;
      const now = this.#ctx.clock.now();
      let deliveryId: number;
      try {
        const row = await this.#ctx.db
          .insertInto('webhook_deliveries')
          .values({
            webhook_id: hook.id,
            task_id: task.id,
            event,
            state: 'pending',
            attempts: 0,
            last_status: null,
            last_error: null,
            created_at: now,
            updated_at: now,
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        deliveryId = Number(row.id);
      } catch {
        continue; // already recorded (the same event seen again, or by another node)
      }
      const body = JSON.stringify({
        event: `task.${event}`,
        delivery_id: deliveryId,
        task: {
          id: this.#ctx.ids.encode('task', task.id),
          status: task.status,
          src: task.src,
          dst: task.dst,
          name: task.download_status?.name ?? null,
          size: task.result_size,
          path: task.result_path,
          error: task.error,
          failure: task.failure,
        },
      });
      void this.#attempt(hook.url, hook.secret, deliveryId, event, body, 1);
    }
  }

  async #attempt(
    url: string,
    secret: string,
    id: number,
    event: WebhookEvent,
    body: string,
    attempt: number,
  ) {
    if (attempt > 1) {
      // A webhook deleted meanwhile took its deliveries with it (cascade): stop retrying.
      const still = await this.#ctx.db
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('id', '=', id)
        .executeTakeFirst()
        .catch(() => undefined);
      if (!still) return;
    }
    const timestamp = String(Math.floor(this.#ctx.clock.now() / 1000));
    let status: number | null = null;
    let error: string | null = null;
    try {
      const res = await this.#client.fetch(url, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Ferry-Webhook/1',
          'x-ferry-event': `task.${event}`,
          'x-ferry-delivery': String(id),
          'x-ferry-timestamp': timestamp,
          'x-ferry-signature': signWebhook(secret, timestamp, body),
        },
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      status = res.status;
      await res.body?.cancel().catch(() => undefined);
      if (res.status < 200 || res.status >= 300) error = `receiver answered HTTP ${res.status}`;
    } catch (e) {
      const cause = (e as { cause?: { message?: string } }).cause;
      error = (cause?.message ?? (e instanceof Error ? e.message : String(e))).slice(0, 500);
    }
    const done = error === null;
    const last = !done && attempt >= ATTEMPTS;
    await this.#ctx.db
      .updateTable('webhook_deliveries')
      .set({
        state: done ? 'delivered' : last ? 'failed' : 'pending',
        attempts: attempt,
        last_status: status,
        last_error: error,
        updated_at: this.#ctx.clock.now(),
      })
      .where('id', '=', id)
      .execute()
      .catch(() => undefined);
    if (done || last) return;
    // Exponential backoff: base, 2×, 4×, 8× (1, 2, 4, 8 s by default).
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        void this.#attempt(url, secret, id, event, body, attempt + 1);
      },
      this.#baseDelayMs * 2 ** (attempt - 1),
    );
    timer.unref();
    this.#timers.add(timer);
  }
}
