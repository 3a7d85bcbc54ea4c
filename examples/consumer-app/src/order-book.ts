import { Injectable } from '@nestjs/common';
import type { OrderCreated } from './order-created.dto.js';

/** The app's own state: how many times each message was handled (what the example's test reads). */
@Injectable()
export class OrderBook {
  private readonly handled = new Map<string, { orderId: string; times: number }>();

  record(order: OrderCreated, messageId: string): void {
    const entry = this.handled.get(messageId) ?? { orderId: order.orderId, times: 0 };
    entry.times += 1;
    this.handled.set(messageId, entry);
  }

  entries(): Record<string, { orderId: string; times: number }> {
    return Object.fromEntries(this.handled);
  }
}
