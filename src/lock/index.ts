/** Public API of the lock module. */
export type { Lock } from './lease';
export type { ReleaseOutcome } from './lock.backend';
export { LockLostError, LockTimeoutError, LockUnavailableError } from './lock.errors';
export type { LockLossReason } from './lock.errors';
export { LockModule } from './lock.module';
export { type AcquireOptions, LockService } from './lock.service';
export type { MessageLock } from './message-lease';
