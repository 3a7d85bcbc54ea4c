import { Controller, Get } from '@nestjs/common';
import { HealthCheck, type HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { MessageProcessorHealth } from 'message-processor';
import { OrderBook } from './order-book.js';

@Controller()
export class AppController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly messaging: MessageProcessorHealth,
    private readonly book: OrderBook,
  ) {}

  /** The app's own readiness: its checks plus the messaging ones (amqp, redis, locks). */
  @Get('health')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check([...this.messaging.readiness()]);
  }

  @Get('orders')
  orders(): Record<string, { orderId: string; times: number }> {
    return this.book.entries();
  }
}
