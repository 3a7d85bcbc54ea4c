import { Injectable } from '@nestjs/common';
import { MessageConsumerService } from '../messaging/message-consumer.service.js';
import { type AsyncApiDocument, type AsyncApiInfo, buildAsyncApi } from './asyncapi.document.js';

/**
 * The application's AsyncAPI 3 document, from the handlers found at bootstrap (README,
 * "AsyncAPI"). The module adds no route: serve `document()` from a controller of your own (the
 * service serves it at `GET /asyncapi.json`).
 */
@Injectable()
export class MessageProcessorAsyncApi {
  constructor(private readonly consumers: MessageConsumerService) {}

  /** The document; empty of channels before the application has bootstrapped. */
  document(
    info: AsyncApiInfo = { title: 'message-processor', version: '0.0.0' },
  ): AsyncApiDocument {
    return buildAsyncApi(this.consumers.bindings(), info);
  }
}
