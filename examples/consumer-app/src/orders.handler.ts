import { Injectable } from '@nestjs/common';
import { type MessageContext, MessageHandler } from 'message-processor';
import { OrderBook } from './order-book.js';
import { OrderCreated } from './order-created.dto.js';

/** The app's handler: found among its providers, one consumer on `shop.orders`. */
@Injectable()
export class OrdersHandler {
  constructor(private readonly book: OrderBook) {}

  @MessageHandler({
    exchange: 'shop',
    routingKey: 'order.created',
    queue: 'shop.orders',
    // one order at a time across replicas
    lockKey: (order: OrderCreated) => `order:${order.orderId}`,
  })
  handle(order: OrderCreated, ctx: MessageContext): void {
    // a messageId is required by this effect kind (deduplication): a message without one is
    // dead-lettered before the handler runs
    this.book.record(order, ctx.messageId ?? '');
  }
}
