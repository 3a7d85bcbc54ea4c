import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { Duplex } from 'node:stream';
import amqp, { type AmqpConnectionManager } from 'amqp-connection-manager';
import type { ChannelModel } from 'amqplib';
import { redactUrl } from '../config/secret-redaction.js';
import { isFailureWorthLogging } from '../logging/failure-log.throttle.js';
import { coalesceWrites } from '../net/write-coalescing.js';

export interface AmqpConnectionOptions {
  readonly urls: readonly string[];
  readonly heartbeatSeconds: number;
  /**
   * Fixed delay between reconnect attempts; amqp-connection-manager tries `urls` round-robin,
   * starting (here) at a random one.
   */
  readonly reconnectSeconds?: number;
  /** Shown in the management UI; default `message-processor@<hostname>`. */
  readonly connectionName?: string;
}

/** What the connection reports (the service's `MessageMetrics`). */
export interface ConnectionMetrics {
  setAmqpConnected(up: boolean): void;
  amqpReconnected(): void;
}

/** Where the connection logs (the service's `PinoLogger`). */
export interface ConnectionLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** Fired with the new amqplib connection each time the broker link is (re)established. */
type ConnectionEvents = {
  connected: [connection: ChannelModel];
  disconnected: [error: Error | undefined];
};

/**
 * The one AMQP connection of the process (amqp-connection-manager: several URLs for cluster
 * failover, heartbeats, automatic reconnect). Consumers and the publisher open their channels on
 * it and listen to `connected` to rebuild them after a reconnect.
 */
export class AmqpConnection extends EventEmitter<ConnectionEvents> {
  readonly manager: AmqpConnectionManager;
  private failures = 0;
  private connects = 0;
  private closed = false;
  private coalescing = false;

  constructor(
    private readonly options: AmqpConnectionOptions,
    private readonly metrics: ConnectionMetrics,
    private readonly logger: ConnectionLogger,
  ) {
    super();
    // replicas start at a random node of a cluster, so their connections (and the channel work
    // on them) spread over the nodes instead of all landing on the first URL
    this.manager = amqp.connect(rotate(options.urls, randomInt(options.urls.length)), {
      heartbeatIntervalInSeconds: options.heartbeatSeconds,
      reconnectTimeInSeconds: options.reconnectSeconds ?? 2,
      connectionOptions: {
        timeout: 5_000,
        // Nagle delays the small frames a consumer sends (acks, and the round trip after the last
        // ack at shutdown) by up to ~40 ms each
        noDelay: true,
        clientProperties: {
          connection_name: options.connectionName ?? `message-processor@${hostname()}`,
        },
      },
    });
    this.metrics.setAmqpConnected(false);
    this.manager.on('connect', ({ url }) => {
      if (this.connects++ > 0) this.metrics.amqpReconnected();
      this.failures = 0;
      this.metrics.setAmqpConnected(true);
      this.logger.info({ url: describe(url) }, 'AMQP connected');
      const connection = this.manager.connection;
      // amqplib's socket (`connection.stream`, not in its types): frames of one pass in one writev
      const stream = (connection?.connection as { stream?: unknown } | undefined)?.stream;
      this.coalescing = stream instanceof Duplex;
      if (stream instanceof Duplex) coalesceWrites(stream);
      if (connection) this.emit('connected', connection);
    });
    this.manager.on('disconnect', ({ err }) => {
      this.metrics.setAmqpConnected(false);
      if (!this.closed) {
        this.logger.warn({ err, code: 'AMQP_DISCONNECTED' }, 'AMQP connection lost; reconnecting');
      }
      this.emit('disconnected', err);
    });
    this.manager.on('connectFailed', ({ err, url }) => {
      this.failures++;
      if (isFailureWorthLogging(this.failures)) {
        this.logger.warn(
          { err, url: describe(url), attempts: this.failures, code: 'AMQP_CONNECT_FAILED' },
          'AMQP connection attempt failed; retrying',
        );
      }
    });
    this.manager.on('blocked', ({ reason }) =>
      this.logger.warn(
        { reason, code: 'AMQP_BLOCKED' },
        'Broker blocked publishing (resource alarm)',
      ),
    );
    this.manager.on('unblocked', () => this.logger.info({}, 'Broker unblocked publishing'));
  }

  /** The open amqplib connection, if any. */
  get connection(): ChannelModel | undefined {
    return this.manager.connection;
  }

  isConnected(): boolean {
    return this.manager.isConnected();
  }

  /**
   * Whether the writes of the current connection are coalesced (docs/architecture.md, Internals
   * inventory): false if amqplib no longer keeps its socket where this looks for it.
   */
  get writesCoalesced(): boolean {
    return this.coalescing;
  }

  /** The vhost every URL names (they share it: one broker, or the nodes of one cluster). */
  get vhost(): string {
    return vhostOf(this.options.urls[0]);
  }

  /** The redacted broker URLs, safe for logs and health output. */
  describeUrls(): string[] {
    return this.options.urls.map(redactUrl);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.manager.close();
    this.metrics.setAmqpConnected(false);
  }
}

/** The vhost named by an AMQP URL's path, as amqplib reads it (`/` when absent). */
export function vhostOf(amqpUrl: string): string {
  const path = new URL(amqpUrl).pathname;
  return path.length > 1 ? decodeURIComponent(path.slice(1)) : '/';
}

/** `urls` starting at index `start` and wrapping around: the failover order is kept. */
export function rotate(urls: readonly string[], start: number): string[] {
  return [...urls.slice(start), ...urls.slice(0, start)];
}

function describe(url: unknown): string | undefined {
  if (typeof url === 'string') return redactUrl(url);
  if (url && typeof url === 'object' && 'url' in url && typeof url.url === 'string') {
    return redactUrl(url.url);
  }
  return undefined;
}
