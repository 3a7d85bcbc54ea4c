import { describe, expect, it } from 'vitest';
import { crc16, keySlot, SLOT_COUNT, slotTagOf } from '../../../src/redis/key-slot.js';

describe('keySlot', () => {
  it('computes CRC16-XMODEM as the cluster specification gives it', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0x31c3);
  });

  // each expected slot is what `CLUSTER KEYSLOT` answered on a cluster-enabled redis-server 7.0
  it.each([
    ['foo', 12_182],
    ['bar', 5_061],
    ['hello', 866],
    ['somekey', 11_058],
    ['123456789', 12_739],
    ['{user1000}.following', 3_443],
    ['foo{}{bar}', 8_363],
    ['foo{{bar}}zap', 4_015],
    ['foo{bar}{zap}', 5_061],
    ['ключ', 10_303],
    ['{a}b}', 15_495],
  ])('slot of %j is %i', (key, slot) => {
    expect(keySlot(key)).toBe(slot);
  });
});

describe('slotTagOf', () => {
  it('gives a short tag that puts any key in the slot of the key it was asked for', () => {
    for (const key of ['account:acc-42', 'ledger:balance:acc-42', '{a}b}', 'x{', '', 'ключ']) {
      const tag = slotTagOf(key);
      expect(tag).toMatch(/^\{[0-9a-z]{1,4}\}$/);
      expect(keySlot(`mp:lock:${tag}${key}`)).toBe(keySlot(key));
      expect(keySlot(`!mp:processed:${tag}q:m-1`)).toBe(keySlot(key));
    }
  });

  it('has a tag for every slot', () => {
    const keyOfSlot = new Map<number, string>();
    for (let i = 0; keyOfSlot.size < SLOT_COUNT; i++) {
      const key = `k${i}`;
      if (!keyOfSlot.has(keySlot(key))) keyOfSlot.set(keySlot(key), key);
    }
    for (const [slot, key] of keyOfSlot) expect(keySlot(`${slotTagOf(key)}x`)).toBe(slot);
  });
});
