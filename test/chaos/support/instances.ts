// What both reliability harnesses (the ledger on Redis, the ledger on PostgreSQL) do with the
// service instances of a run and the queues of its vhost.
import type { Channel } from 'amqplib';
import { describeMessage, sweep } from '../../e2e/support/secret-sweep.js';
import type { ServiceProcess } from '../../e2e/support/service.process.js';
import { waitFor } from '../../e2e/support/wait-for.js';

/** Waits until every instance answers 200 on readiness; fails at once if one exited. */
export async function waitAllReady(services: readonly ServiceProcess[]): Promise<void> {
  await waitFor(
    `${services.length} instance(s) ready`,
    async () => {
      for (const s of services) {
        if (!s.alive) throw new Error(`instance exited:\n${s.stderr}\n${s.stdout.slice(-2_000)}`);
        if (s.httpPort === undefined) return false;
        const res = await fetch(`http://127.0.0.1:${s.httpPort}/health/ready`).catch(() => null);
        if (res?.status !== 200) return false;
      }
      return true;
    },
    60_000,
    100,
  );
}

async function metricsText(service: ServiceProcess): Promise<string> {
  return (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
}

/** `messages_in_flight` of `service` (received, not settled), from its /metrics. */
export async function inFlight(service: ServiceProcess): Promise<number> {
  if (!service.alive || service.httpPort === undefined) return 0;
  let total = 0;
  for (const m of (await metricsText(service)).matchAll(/^messages_in_flight\{[^}]*\} (\d+)/gm)) {
    total += Number(m[1]);
  }
  return total;
}

/** `messages_processed_total` of one instance by outcome. */
export async function outcomesOf(service: ServiceProcess): Promise<Record<string, number>> {
  const totals: Record<string, number> = {};
  for (const m of (await metricsText(service)).matchAll(
    /^messages_processed_total\{[^}]*outcome="(\w+)"[^}]*\} (\d+)/gm,
  )) {
    totals[m[1]] = (totals[m[1]] ?? 0) + Number(m[2]);
  }
  return totals;
}

/** `messages_processed_total` by outcome, summed over the live instances (a killed one takes its counts). */
export async function outcomesOfLive(
  services: readonly ServiceProcess[],
): Promise<Record<string, number>> {
  const totals: Record<string, number> = {};
  for (const service of services) {
    if (!service.alive || service.httpPort === undefined) continue;
    for (const [outcome, n] of Object.entries(await outcomesOf(service))) {
      totals[outcome] = (totals[outcome] ?? 0) + n;
    }
  }
  return totals;
}

/** SIGTERM to every instance; resolves once all have drained and exited. */
export async function terminateAll(services: ServiceProcess[]): Promise<void> {
  const stopping = services.splice(0);
  for (const service of stopping) service.kill('SIGTERM');
  await Promise.all(stopping.map((service) => service.exitCode(30_000)));
}

/** Messages per queue (ready + unacked), from `rabbitmqctl list_queues` through `ctl`. */
export async function queueDepths(
  ctl: (...args: string[]) => Promise<string>,
  vhost: string,
): Promise<Record<string, number>> {
  const stdout = await ctl('list_queues', '-p', vhost, '--no-table-headers', 'name', 'messages');
  const depths: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const [name, messages] = line.trim().split(/\s+/);
    if (name) depths[name] = Number(messages);
  }
  return depths;
}

/**
 * Takes every message out of `queue` (a DLQ): tracking id (correlationId, else messageId) and
 * x-exception-type, and every message's properties and headers as text, for the secret sweep.
 */
export async function drainDeadLetters(
  channel: Channel,
  queue: string,
): Promise<{ dead: { id: string; reason: string }[]; described: string }> {
  const dead: { id: string; reason: string }[] = [];
  const described: string[] = [];
  for (;;) {
    const message = await channel.get(queue, { noAck: true });
    if (!message) break;
    described.push(describeMessage(message));
    const props = message.properties;
    dead.push({
      id: String(props.correlationId ?? props.messageId ?? `(untracked ${dead.length})`),
      reason: String(props.headers?.['x-exception-type'] ?? 'unknown'),
    });
  }
  return { dead, described: described.join('\n') };
}

/**
 * The run's passwords, in every form, in every output: the stdout and stderr of every instance
 * ever started, /metrics, health bodies and headers of the live ones, the dead-lettered messages.
 * Returns the findings (also written to stderr).
 */
export async function sweepOutputs(
  everyService: readonly ServiceProcess[],
  deadLettered: string,
  passwords: readonly string[],
  users: readonly string[],
): Promise<string[]> {
  const outputs: Record<string, string> = { 'dead-lettered messages': deadLettered };
  for (const [i, service] of everyService.entries()) {
    outputs[`instance ${i} stdout`] = service.stdout;
    outputs[`instance ${i} stderr`] = service.stderr;
    if (!service.alive || service.httpPort === undefined) continue;
    for (const path of ['/metrics', '/health/live', '/health/ready']) {
      const res = await fetch(`http://127.0.0.1:${service.httpPort}${path}`);
      outputs[`instance ${i} ${path}`] = `${JSON.stringify([...res.headers])}\n${await res.text()}`;
    }
  }
  const findings = sweep(outputs, [...passwords], [...users]);
  for (const f of findings) process.stderr.write(`secret found: ${JSON.stringify(f)}\n`);
  return findings.map((f) => `${f.output}: ${f.form}`);
}
