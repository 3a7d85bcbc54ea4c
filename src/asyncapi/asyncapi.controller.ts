import { Controller, Get, Header } from '@nestjs/common';
import { packageVersion } from '../package-version.js';
import { type AsyncApiDocument, serviceInfo } from './asyncapi.document.js';
import { MessageProcessorAsyncApi } from './asyncapi.service.js';

/** The service's `GET /asyncapi.json`. */
@Controller()
export class AsyncApiController {
  constructor(private readonly asyncApi: MessageProcessorAsyncApi) {}

  @Get('asyncapi.json')
  @Header('Cache-Control', 'no-store')
  document(): AsyncApiDocument {
    return this.asyncApi.document(serviceInfo(packageVersion()));
  }
}
