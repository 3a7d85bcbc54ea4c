/**
 * Redis Cluster's key → hash slot mapping (the cluster specification, "Keys distribution model"):
 * CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the key, modulo 16384, where a key with a
 * hash tag (the text between its first `{` and the first `}` after it, when not empty) is hashed
 * by that text only. Keys that must be read and written in one atomic step (a script) must share
 * a slot.
 */

export const SLOT_COUNT = 16_384;

const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[byte] = crc & 0xffff;
  }
  return table;
})();

/** CRC16-XMODEM of the bytes. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) ^ TABLE[((crc >> 8) ^ byte) & 0xff]) & 0xffff;
  return crc;
}

/** The part of `key` Redis hashes: its hash tag, or the whole key. */
export function hashedPart(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/** The hash slot of `key` (its UTF-8 bytes, as Redis sees them). */
export function keySlot(key: string): number {
  return crc16(Buffer.from(hashedPart(key), 'utf8')) % SLOT_COUNT;
}

let tags: string[] | undefined;

/**
 * A short hash tag (`{…}`) for every slot: the first base-36 numeral that hashes there. Built
 * on first use, in a few milliseconds (about 170,000 numerals to cover every slot).
 */
function tagTable(): string[] {
  if (tags) return tags;
  const table = new Array<string>(SLOT_COUNT);
  let filled = 0;
  for (let n = 0; filled < SLOT_COUNT; n++) {
    const text = n.toString(36);
    const slot = crc16(Buffer.from(text, 'latin1')) % SLOT_COUNT;
    if (table[slot] === undefined) {
      table[slot] = `{${text}}`;
      filled++;
    }
  }
  tags = table;
  return table;
}

/**
 * The hash tag that puts a key in the same slot as `key`, whatever `key` holds (braces of its
 * own included): `{` + a short numeral + `}`. A key that starts with it lives in `key`'s slot.
 */
export function slotTagOf(key: string): string {
  return tagTable()[keySlot(key)];
}
