import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { MessageProcessorModule } from 'message-processor';
import { AppController } from './app.controller.js';
import { OrderBook } from './order-book.js';
import { OrdersHandler } from './orders.handler.js';

@Module({
  imports: [
    // options, not process.env: the app decides where they come from
    MessageProcessorModule.forRootAsync({
      useFactory: () => ({
        amqp: { urls: process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672' },
        redis: { url: process.env.REDIS_URL ?? 'redis://localhost:6379' },
        processing: { retry: { maxAttempts: 3, initialDelayMs: 200 } },
      }),
    }),
    TerminusModule,
    // the app's own /metrics: the messaging metrics appear on it with the app's
    PrometheusModule.register(),
  ],
  controllers: [AppController],
  providers: [OrderBook, OrdersHandler],
})
export class AppModule {}
