import { describe, it, expect } from 'vitest';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import type { Redis } from 'ioredis';
import { AmqpConnection } from '../../src/messaging/amqp.connection.js';
import { isCoalescing } from '../../src/net/write-coalescing.js';
import { PostgresConnection } from '../../src/postgres/postgres.connection.js';
import { createRedisClient, isClusterClient } from '../../src/redis/redis.connection.js';
import { TestDatabase } from './support/postgres.database.js';
import { waitFor } from './support/wait-for.js';

/**
 * The reaches into library internals that docs/architecture.md's inventory keeps, checked on the
 * real libraries: if an upgrade moves what they rely on, these fail instead of the service
 * silently losing what the reach bought.
 */
/** The service's client of one local server (not a cluster: one socket to look at). */
function serverClient(name: string): Redis {
  const client = createRedisClient('redis://127.0.0.1:6379', name);
  if (isClusterClient(client)) throw new Error('expected a client of one server');
  return client;
}

/** A pool of `poolMax` on a database of its own, closed and dropped after `use`. */
async function withPool(
  name: string,
  poolMax: number,
  use: (connection: PostgresConnection) => Promise<void>,
): Promise<void> {
  const db = await TestDatabase.create(name);
  const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const connection = new PostgresConnection(
    { url: db.url(), poolMax },
    { setPostgresConnected: () => undefined },
    quiet,
  );
  try {
    await use(connection);
  } finally {
    await connection.close();
    await db.drop();
  }
}

describe('library internals the service relies on (real ioredis, amqplib and node-postgres)', () => {
  it("coalesces the writes of the real ioredis socket: one pass's commands, one writev", async () => {
    const client = serverClient('internals-e2e');
    try {
      if (client.status !== 'ready') await once(client, 'ready');
      const socket = client.stream as Duplex & {
        _writev?: (chunks: { chunk: unknown }[], callback: (error?: Error | null) => void) => void;
      };
      expect(isCoalescing(socket)).toBe(true);
      // Node's stream hands corked writes to _writev in one call when the socket is uncorked
      let writevs = 0;
      let buffered = 0;
      const writev = socket._writev?.bind(socket);
      socket._writev = (chunks, callback) => {
        writevs++;
        buffered += chunks.length;
        writev?.(chunks, callback);
      };
      const replies = await Promise.all(Array.from({ length: 20 }, () => client.ping()));
      expect(replies.every((r) => r === 'PONG')).toBe(true);
      expect(writevs).toBe(1);
      expect(buffered).toBe(20);
    } finally {
      client.disconnect();
    }
  });

  it("finds node-postgres' socket where it looks for it (client.connection.stream), and coalesces a query's messages into one writev", async () => {
    await withPool('internals', 1, async (connection) => {
      const client = await connection.pool.connect();
      try {
        const socket = (client as unknown as { connection: { stream: Duplex } }).connection
          .stream as Duplex & {
          _writev?: (
            chunks: { chunk: unknown }[],
            callback: (error?: Error | null) => void,
          ) => void;
        };
        expect(isCoalescing(socket)).toBe(true);
        let writevs = 0;
        let buffered = 0;
        const writev = socket._writev?.bind(socket);
        socket._writev = (chunks, callback) => {
          writevs++;
          buffered += chunks.length;
          writev?.(chunks, callback);
        };
        // an extended-protocol query: parse, bind, describe, execute and sync, written one by one
        const { rows } = await client.query<{ n: number }>('SELECT $1::int AS n', [7]);
        expect(rows).toEqual([{ n: 7 }]);
        expect(writevs).toBe(1);
        expect(buffered).toBeGreaterThanOrEqual(4);
      } finally {
        client.release();
      }
    });
  });

  it('keeps an error listener on a pooled client that a release hands straight to a waiting connect()', async () => {
    await withPool('handoff', 1, async (connection) => {
      const first = await connection.pool.connect();
      // the pool is full: this one waits for the release below, which hands the client over
      const waiting = connection.pool.connect();
      first.release();
      // pg-pool removed its own listener while handing it over; the waiter has not attached
      // one yet (its await resumes later): a session ended now (pg_terminate_backend) emits this
      const terminated = new Error('terminating connection due to administrator command');
      expect(() => first.emit('error', terminated)).not.toThrow();
      const second = await waiting;
      expect(second).toBe(first);
      second.release(terminated);
    });
  });

  it("finds amqplib's socket where it looks for it, and coalesces its writes", async () => {
    const logger = pino({ enabled: false });
    const connection = new AmqpConnection(
      { urls: ['amqp://guest:guest@127.0.0.1:5672'], heartbeatSeconds: 10 },
      { setAmqpConnected: () => undefined, amqpReconnected: () => undefined },
      { info: (o, m) => logger.info(o, m), warn: (o, m) => logger.warn(o, m) },
    );
    try {
      await waitFor('the AMQP connection', () => connection.isConnected());
      expect(connection.writesCoalesced).toBe(true);
    } finally {
      await connection.close();
    }
  });

  it('keeps the coalescing per socket: a reconnected ioredis client coalesces its new socket', async () => {
    const client = serverClient('internals-e2e-reconnect');
    try {
      if (client.status !== 'ready') await once(client, 'ready');
      const first = client.stream;
      client.disconnect(true);
      await once(client, 'ready');
      expect(client.stream).not.toBe(first);
      expect(isCoalescing(client.stream)).toBe(true);
    } finally {
      client.disconnect();
    }
  });
});
