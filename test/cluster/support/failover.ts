import type { ServiceProcess } from '../../e2e/support/service.process.js';

/**
 * The broker ports an instance connected to, in order, from its `AMQP connected` log lines (the
 * URL is logged with its password redacted, its port kept). The last one is its node now.
 */
export function connectedPorts(service: ServiceProcess): number[] {
  const ports: number[] = [];
  for (const line of service.stdout.split('\n')) {
    if (!line.includes('"AMQP connected"')) continue;
    const port = /"url":"amqps?:\/\/[^"]*?:(\d+)\//.exec(line)?.[1];
    if (port) ports.push(Number(port));
  }
  return ports;
}

/** The status of the instance's readiness probe now (undefined while it does not answer). */
export async function readiness(service: ServiceProcess): Promise<number | undefined> {
  if (service.httpPort === undefined) return undefined;
  const res = await fetch(`http://127.0.0.1:${service.httpPort}/health/ready`).catch(() => null);
  return res?.status;
}
