import { describe, it, expect } from 'vitest';
import { type ArgumentMetadata, ValidationPipe } from '@nestjs/common';
import { Transform, Type } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsOptional,
  IsString,
  MaxLength,
  registerDecorator,
  ValidateIf,
  ValidateNested,
  ValidatorConstraint,
  type ValidatorConstraintInterface,
  Validate,
} from 'class-validator';
import { TransactionDto } from '../../../src/ledger/transaction.dto.js';
import { CompiledValidation } from '../../../src/messaging/compiled-validation.js';
import { MessageValidationPipe } from '../../../src/messaging/message-validation.pipe.js';
import { MessageValidationError } from '../../../src/messaging/messaging.errors.js';

/** An order with optional, conditional and custom rules, and a default no rule covers. */
class OrderDto {
  @IsString()
  @MaxLength(8)
  sku!: string;

  @IsOptional()
  @IsIn(['eur', 'usd'])
  currency?: string;

  @IsBoolean()
  gift!: boolean;

  @ValidateIf((o: OrderDto) => o.gift === true)
  @IsString()
  message?: string;

  @IsEven()
  quantity!: number;

  /** No rule: the whitelist strips it, whatever the constructor set. */
  internal = 'set by the constructor';
}

function IsEven(): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isEven',
      target: target.constructor,
      propertyName: propertyName as string,
      validator: { validate: (value: unknown) => typeof value === 'number' && value % 2 === 0 },
    });
}

class LineDto {
  @IsString()
  sku!: string;
}

class NestedDto {
  @ValidateNested()
  @Type(() => LineDto)
  line!: LineDto;
}

class TransformedDto {
  @Transform(({ value }) => String(value).trim())
  @IsString()
  name!: string;
}

class AccessorDto {
  @IsString()
  name!: string;

  get upper(): string {
    return this.name.toUpperCase();
  }
}

@ValidatorConstraint({ name: 'slowCheck', async: true })
class SlowCheck implements ValidatorConstraintInterface {
  validate(): Promise<boolean> {
    return Promise.resolve(true);
  }
}

class AsyncDto {
  @Validate(SlowCheck)
  name!: string;
}

class NoRulesDto {
  name!: string;
}

const body = (metatype: ArgumentMetadata['metatype']): ArgumentMetadata => ({
  type: 'body',
  metatype,
  data: undefined,
});

/** The same pipe with the compiled path bypassed: Nest's ValidationPipe as configured. */
class NestPathPipe extends MessageValidationPipe {
  override transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    return ValidationPipe.prototype.transform.call(this, value, metadata) as Promise<unknown>;
  }
}

async function nestResult(
  dto: ArgumentMetadata['metatype'],
  payload: unknown,
): Promise<{ entity?: unknown; error?: unknown }> {
  try {
    return { entity: await new NestPathPipe().transform(structuredClone(payload), body(dto)) };
  } catch (error) {
    return { error };
  }
}

/** Deterministic payloads: valid, invalid, missing and extra properties, wrong types. */
function payloads(seed: number, pick: (r: () => number) => Record<string, unknown>): unknown[] {
  let state = seed;
  const random = (): number => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
  return Array.from({ length: 2_000 }, () => pick(random));
}

const choose = <T>(random: () => number, options: readonly T[]): T =>
  options[Math.floor(random() * options.length)];

const ABSENT = Symbol('absent');
function object(entries: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== ABSENT));
}

describe('CompiledValidation', () => {
  it('compiles flat DTOs and leaves the rest to the pipe', () => {
    expect(CompiledValidation.compile(TransactionDto)).toBeInstanceOf(CompiledValidation);
    expect(CompiledValidation.compile(OrderDto)).toBeInstanceOf(CompiledValidation);
    for (const dto of [NestedDto, TransformedDto, AccessorDto, AsyncDto, NoRulesDto]) {
      expect(CompiledValidation.compile(dto)).toBeUndefined();
    }
  });

  it.each([
    [
      'TransactionDto',
      TransactionDto,
      (r: () => number) =>
        object({
          accountId: choose(r, ['acc-1', 'A_b-9', '', 'bad id!', 'x'.repeat(65), 42, null, ABSENT]),
          amountCents: choose(r, [
            1250,
            -3,
            0,
            1.5,
            '12',
            Number.MAX_SAFE_INTEGER + 2,
            null,
            ABSENT,
          ]),
          memo: choose(r, ['padding', { nested: true }, [1, 2], ABSENT]),
        }),
    ],
    [
      'OrderDto',
      OrderDto,
      (r: () => number) =>
        object({
          sku: choose(r, ['SKU-1', 'TOO-LONG-SKU', 7, ABSENT]),
          currency: choose(r, ['eur', 'gbp', null, ABSENT]),
          gift: choose(r, [true, false, 'yes', ABSENT]),
          message: choose(r, ['for you', 3, ABSENT]),
          quantity: choose(r, [2, 3, '4', ABSENT]),
          internal: choose(r, ['from the producer', ABSENT]),
          extra: choose(r, ['ignored', ABSENT]),
        }),
    ],
  ])(
    'accepts exactly what the pipe accepts, with the same instance (%s)',
    async (_name, dto, pick) => {
      const rules = CompiledValidation.compile(dto);
      let accepted = 0;
      let refused = 0;
      for (const payload of payloads(7, pick)) {
        const fast = rules?.accept(structuredClone(payload));
        const nest = await nestResult(dto, payload);
        if (nest.error !== undefined) {
          expect(nest.error).toBeInstanceOf(MessageValidationError);
          expect(fast).toBeUndefined();
          refused++;
          continue;
        }
        // a flat JSON payload the pipe accepts is accepted by the compiled rules too
        expect(fast).toBeDefined();
        expect(Object.getPrototypeOf(fast)).toBe(dto.prototype);
        expect(Object.keys(fast as object)).toEqual(Object.keys(nest.entity as object));
        expect(fast).toEqual(nest.entity);
        accepted++;
      }
      expect(accepted).toBeGreaterThan(20);
      expect(refused).toBeGreaterThan(20);
    },
  );

  it('MessageValidationPipe returns the compiled result, and the precise errors otherwise', async () => {
    const pipe = new MessageValidationPipe();
    const tx = await pipe.transform(
      { accountId: 'acc-1', amountCents: 5, memo: 'x' },
      body(TransactionDto),
    );
    expect(tx).toBeInstanceOf(TransactionDto);
    expect(tx).toEqual({ accountId: 'acc-1', amountCents: 5 });
    await expect(
      pipe.transform({ accountId: 'bad id!', amountCents: 5 }, body(TransactionDto)),
    ).rejects.toThrow('accountId must be 1-64 characters of [A-Za-z0-9_-]');
    // a DTO the compiled path does not take still validates
    await expect(pipe.transform({ line: { sku: 3 } }, body(NestedDto))).rejects.toBeInstanceOf(
      MessageValidationError,
    );
    const nested = await pipe.transform({ line: { sku: 'A' } }, body(NestedDto));
    expect((nested as NestedDto).line).toBeInstanceOf(LineDto);
  });
});
