import { Injectable } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { AmqpConnection } from '../messaging/amqp.connection.js';
import { MessageConsumerService } from '../messaging/message-consumer.service.js';

/**
 * Up when the AMQP connection is open, every registered consumer is attached (or held detached by
 * its kill switch: restarting or removing the replica would not heal the downstream) and no
 * shutdown has begun. Reads the state the service already holds: no probe connection per request.
 */
@Injectable()
export class MessagingHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly connection: AmqpConnection,
    private readonly consumers: MessageConsumerService,
  ) {}

  check(key = 'amqp'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const consumers = this.consumers.status();
    const details = {
      connected: this.connection.isConnected(),
      consumers: consumers.map((c) => ({
        queue: c.queue,
        attached: c.attached,
        ...(c.error ? { error: c.error } : {}),
        // detached (or on one message at a time) on purpose: the process is fine, a downstream is not
        ...(c.killSwitch ? { killSwitch: c.killSwitch } : {}),
        // up, but without the dead-letter protection of this version until a policy adds it
        ...(c.legacyQueues
          ? {
              migrationNeeded: c.legacyQueues.map((q) => ({
                queue: q.queue,
                missingArgument: q.missingArgument,
                policy: q.policy,
              })),
            }
          : {}),
      })),
    };
    if (this.consumers.isShuttingDown()) return indicator.down({ ...details, shuttingDown: true });
    if (!details.connected || consumers.some((c) => !c.attached && c.killSwitch === undefined)) {
      return indicator.down(details);
    }
    return indicator.up(details);
  }
}
