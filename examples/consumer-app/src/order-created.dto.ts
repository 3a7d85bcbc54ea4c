import { IsInt, IsString, Min } from 'class-validator';

/** The payload of `order.created`: validated before the handler runs, or dead-lettered. */
export class OrderCreated {
  @IsString()
  orderId!: string;

  @IsInt()
  @Min(1)
  quantity!: number;
}
