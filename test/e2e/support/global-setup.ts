import { Socket } from 'node:net';

const AMQP = { host: '127.0.0.1', port: 5672 };
const REDIS = { host: '127.0.0.1', port: 6379 };

/** Fails the e2e run within seconds, saying which service is down and how to start it. */
export default async function globalSetup(): Promise<void> {
  const problems: string[] = [];
  if (!(await reachable(AMQP.host, AMQP.port))) {
    problems.push(
      `RabbitMQ is not reachable at ${AMQP.host}:${AMQP.port}. Start it with: rabbitmq-server -detached`,
    );
  }
  if (!(await redisAnswers(REDIS.host, REDIS.port))) {
    problems.push(
      `Redis is not reachable at ${REDIS.host}:${REDIS.port}. Start it with: redis-server --daemonize yes --port 6379 --save "" --appendonly no`,
    );
  }
  if (problems.length > 0)
    throw new Error(`E2E tests need real services:\n  ${problems.join('\n  ')}`);
}

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.setTimeout(3_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
    socket.connect(port, host);
  });
}

function redisAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.setTimeout(3_000);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
    socket.connect(port, host);
  });
}
