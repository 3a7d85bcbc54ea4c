import { Module } from '@nestjs/common';
import { LedgerHandler } from './ledger.handler.js';
import { LedgerService } from './ledger.service.js';

/** The example domain: remove this module and add your own handlers the same way. */
@Module({ providers: [LedgerHandler, LedgerService] })
export class LedgerModule {}
