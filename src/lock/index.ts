/** Public API of the lock module. */
export type { Lock } from './lease.js';
export type { ReleaseOutcome } from './lock.backend.js';
export { LockLostError, LockTimeoutError, LockUnavailableError } from './lock.errors.js';
export type { LockLossReason } from './lock.errors.js';
export { LockModule } from './lock.module.js';
export { type AcquireOptions, LockService } from './lock.service.js';
export type { MessageLock } from './message-lease.js';
