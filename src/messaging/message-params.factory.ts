import type { ParamData } from '@nestjs/common';
import type { ParamsFactory } from '@nestjs/core';
import { RpcParamtype } from '@nestjs/microservices/enums/rpc-paramtype.enum';

/**
 * Resolves `@Payload()` and `@Ctx()` parameters of a message handler, as Nest's microservice
 * transports do: the handler is invoked with `(payload, context)`.
 */
export class MessageParamsFactory implements ParamsFactory {
  exchangeKeyForValue(type: number, data: ParamData | undefined, args: unknown[]): unknown {
    if (type === Number(RpcParamtype.PAYLOAD)) {
      const payload = args[0];
      return typeof data === 'string' && typeof payload === 'object' && payload !== null
        ? (payload as Record<string, unknown>)[data]
        : payload;
    }
    if (type === Number(RpcParamtype.CONTEXT)) return args[1];
    return undefined;
  }
}
