import { IsInt, IsString, Matches, Max, Min } from 'class-validator';

/** A ledger transaction as producers publish it: `{"accountId": "acc-42", "amountCents": 1250}`. */
export class TransactionDto {
  /** 1–64 characters of `[A-Za-z0-9_-]`. */
  @IsString()
  @Matches(/^[A-Za-z0-9_-]{1,64}$/, {
    message: 'accountId must be 1-64 characters of [A-Za-z0-9_-]',
  })
  accountId!: string;

  /** Signed amount in cents; a safe integer so no precision is lost in JSON. */
  @IsInt()
  @Min(Number.MIN_SAFE_INTEGER)
  @Max(Number.MAX_SAFE_INTEGER)
  amountCents!: number;
}
