import { EventEmitter } from 'node:events';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import {
  type ClusterTarget,
  isClusterUrl,
  isSentinelUrl,
  parseClusterUrl,
  parseSentinelUrl,
  type SentinelTarget,
} from '../config/redis-url.js';
import { redactUrl } from '../config/secret-redaction.js';
import { shutdownStep } from '../lifecycle/shutdown-step.js';
import { isFailureWorthLogging } from '../logging/failure-log.throttle.js';
import type { MessageMetrics } from '../metrics/message.metrics.js';
import { coalesceWrites } from '../net/write-coalescing.js';

/** Commands fail after this long instead of hanging on a stalled server. */
export const REDIS_COMMAND_TIMEOUT_MS = 5_000;

/** Capped, jittered reconnect backoff (ms) of every client, and of the sentinels' queries. */
function backoff(times: number): number {
  return Math.min(100 * 2 ** Math.min(times, 6), 5_000) * (0.5 + Math.random() / 2);
}

/**
 * Options of every client of the service: fail fast while disconnected (no offline queue, one
 * retry per request), a command timeout, and capped, jittered reconnect backoff. No
 * auto-pipelining: ioredis keeps one auto-pipeline in flight per connection and queues every
 * later command until its replies are all in, which put a whole round trip in front of most
 * messages; written at once, each command costs a socket write but waits for nothing
 * (`npm run bench`: 35,600 against 28,700 msg/s, one commit script per message).
 */
export function redisClientOptions(connectionName = 'message-processor'): RedisOptions {
  return {
    connectionName,
    // RESP2, as before ioredis 6 made RESP3 its default: the replies the scripts, the journal and
    // the CLI read keep one shape, no HELLO is sent (Redis before 6 and some proxies refuse it),
    // and an unauthenticated link is not closed by HELLO's NOAUTH before AUTH can be reported
    protocol: 2,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: 5_000,
    enableAutoPipelining: false,
    retryStrategy: backoff,
  };
}

/**
 * A client of the service's Redis: one server (or the primary Sentinel names), or a Redis Cluster.
 * Both answer the commands the service sends; on a cluster each command goes to the node of its
 * keys' slot, and a script's keys must share one slot (`key-slot.ts`).
 */
export type RedisClient = Redis | Cluster;

/** Whether `client` is a Redis Cluster client (ioredis's own flag, whatever copy made it). */
export function isClusterClient(client: RedisClient): client is Cluster {
  return client.isCluster;
}

/** The client's own command timeout (each node's, on a cluster), if it has one. */
export function commandTimeoutOf(client: RedisClient): number | undefined {
  return isClusterClient(client)
    ? client.options.redisOptions?.commandTimeout
    : client.options.commandTimeout;
}

/**
 * A client of the service (`redisClientOptions`) whose writes of one event-loop pass go out in
 * one system call, on every connection it makes (every node's, on a cluster).
 */
export function createRedisClient(url: string, connectionName: string): RedisClient {
  const client = redisFromUrl(url, redisClientOptions(connectionName));
  const coalesce = (node: Redis): void => {
    node.on('connect', () => coalesceWrites(node.stream));
  };
  if (isClusterClient(client)) client.on('+node', coalesce);
  else coalesce(client);
  return client;
}

/**
 * A client of `url`: a server, the primary a `redis+sentinel://` URL's sentinels name, or the
 * Redis Cluster a `redis+cluster://` URL's seed nodes lead to.
 */
export function redisFromUrl(url: string, options: RedisOptions): RedisClient {
  if (isClusterUrl(url)) {
    const target = parseClusterUrl(url);
    return new Cluster(
      target.nodes.map((n) => ({ host: n.host, port: n.port })),
      clusterOptions(target, options),
    );
  }
  return isSentinelUrl(url)
    ? new Redis(sentinelOptions(parseSentinelUrl(url), options))
    : new Redis(url, options);
}

/**
 * ioredis in cluster mode, with the service's options on every node: no offline queue (a
 * command while the cluster is down fails, and its message is handed back), the command
 * timeout, and the capped backoff for reconnecting to the cluster. A node that fails over is
 * followed by ioredis: MOVED and ASK redirect a command, CLUSTERDOWN and TRYAGAIN retry it
 * after a short delay, and the slot map is read again when a node is lost or every 5 s.
 */
export function clusterOptions(target: ClusterTarget, options: RedisOptions): ClusterOptions {
  // the cluster reconnects, retries and queues for its nodes: those options are its own
  const nodeOptions: RedisOptions = { ...options };
  delete nodeOptions.retryStrategy;
  delete nodeOptions.enableOfflineQueue;
  delete nodeOptions.maxRetriesPerRequest;
  delete nodeOptions.enableAutoPipelining;
  return {
    redisOptions: {
      ...nodeOptions,
      username: target.username,
      password: target.password,
      ...(target.tls ? { tls: {} } : {}),
    },
    enableOfflineQueue: options.enableOfflineQueue,
    enableAutoPipelining: false,
    clusterRetryStrategy: backoff,
    scaleReads: 'master',
    maxRedirections: 16,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: 2_000,
    slotsRefreshInterval: 5_000,
  };
}

/**
 * ioredis in Sentinel mode: it asks the sentinels for the primary on every (re)connect, checks
 * the node it reaches is one (`role: master`), and, with the failover detector, reconnects as soon
 * as a sentinel announces a new primary (`+switch-master`) instead of when the old one fails.
 */
export function sentinelOptions(target: SentinelTarget, options: RedisOptions): RedisOptions {
  return {
    ...options,
    sentinels: target.sentinels.map((s) => ({ host: s.host, port: s.port })),
    name: target.name,
    role: 'master',
    db: target.db,
    username: target.username,
    password: target.password,
    sentinelUsername: target.sentinelUsername,
    sentinelPassword: target.sentinelPassword,
    failoverDetector: true,
    // the sentinels' answers are asked again at each reconnect: the same capped backoff
    sentinelRetryStrategy: backoff,
    ...(target.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
  };
}

type RedisEvents = { ready: []; down: [] };

/**
 * The Redis client of the process (ioredis) and its state. Commands fail fast while the link is
 * down (no offline queue: a message must be handed back, not parked in memory), and the client
 * reconnects by itself with capped, jittered backoff. `ready`/`down` let consumers pause intake.
 */
export class RedisConnection extends EventEmitter<RedisEvents> {
  readonly client: RedisClient;
  private failures = 0;
  private readies = 0;
  private closing = false;
  /** Whether the client is ours to close (not one the application gave). */
  private readonly owned: boolean;
  private readonly onReady = (): void => {
    if (this.readies++ > 0) this.metrics.redisReconnected();
    this.failures = 0;
    this.metrics.setRedisConnected(true);
    this.logger.info({ url: redactUrl(this.url) }, 'Redis ready');
    this.emit('ready');
  };
  private readonly onClose = (): void => {
    this.metrics.setRedisConnected(false);
    if (!this.closing) this.emit('down');
  };
  private readonly onError = (err: Error): void => {
    this.failures++;
    if (isFailureWorthLogging(this.failures)) {
      this.logger.warn(
        { err, url: redactUrl(this.url), failures: this.failures, code: 'REDIS_ERROR' },
        'Redis connection error; reconnecting',
      );
    }
  };

  /**
   * `existing`: a client the application already has, used as it is (its options, its socket)
   * and left open at shutdown; a warning says when its options would park commands in memory
   * while Redis is down instead of failing them.
   */
  constructor(
    private readonly url: string,
    private readonly metrics: MessageMetrics,
    private readonly logger: Logger,
    existing?: RedisClient,
  ) {
    super();
    this.owned = existing === undefined;
    this.client = existing ?? createRedisClient(url, 'message-processor');
    this.metrics.setRedisConnected(false);
    this.client.on('ready', this.onReady);
    this.client.on('close', this.onClose);
    this.client.on('error', this.onError);
    if (existing) {
      const { enableOfflineQueue } = existing.options;
      const commandTimeout = commandTimeoutOf(existing);
      if (enableOfflineQueue !== false || commandTimeout === undefined) {
        this.logger.warn(
          { url: redactUrl(url), enableOfflineQueue, commandTimeout, code: 'REDIS_CLIENT_OPTIONS' },
          'The Redis client given to the module queues commands while disconnected or has no command timeout: a handler may wait for Redis instead of its message being handed back. Create it with messageProcessorRedisOptions()',
        );
      }
      // a client already connected emits no `ready` again
      if (existing.status === 'ready') queueMicrotask(this.onReady);
    }
  }

  /** Whether the service's Redis is a Redis Cluster (keys of one commit then share a slot). */
  get cluster(): boolean {
    return this.client.isCluster;
  }

  isReady(): boolean {
    return this.client.status === 'ready';
  }

  /** PING with a short deadline, for readiness. */
  async ping(timeoutMs: number): Promise<boolean> {
    if (!this.isReady()) return false;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([this.client.ping().then((r) => r === 'PONG'), deadline]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (!this.owned) {
      // the application's client: it closes it
      this.client.off('ready', this.onReady);
      this.client.off('close', this.onClose);
      this.client.off('error', this.onError);
      return;
    }
    // QUIT waits for the replies still due; a stalled or unreachable server gets cut off
    if (!(await shutdownStep(this.client.quit()))) this.client.disconnect();
  }
}
