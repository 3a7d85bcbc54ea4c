import { Controller, Get, Header } from '@nestjs/common';
import { packageVersion } from '../package-version.js';
import type { AsyncApiDocument } from './asyncapi.document.js';
import { MessageProcessorAsyncApi } from './asyncapi.service.js';

/** The service's `GET /asyncapi.json`. */
@Controller()
export class AsyncApiController {
  constructor(private readonly asyncApi: MessageProcessorAsyncApi) {}

  @Get('asyncapi.json')
  @Header('Cache-Control', 'no-store')
  document(): AsyncApiDocument {
    return this.asyncApi.document({
      title: 'message-processor',
      version: packageVersion(),
      description:
        'Consumes RabbitMQ messages with handlers registered by decorators, once in effect.',
    });
  }
}
