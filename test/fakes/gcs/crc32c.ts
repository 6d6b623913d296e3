/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by Google Cloud Storage.
 * Slicing-by-8 table implementation; GCS transmits the value as the base64 of its 4 big-endian bytes.
 */
const POLY = 0x82f63b78;

const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    let c = t[i]!;
    for (let s = 1; s < 8; s++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[s * 256 + i] = c >>> 0;
    }
  }
  return t;
})();

/** Continue a CRC-32C over `buf`, starting from a previous result (0 for a fresh one). */
export function crc32cUpdate(crc: number, buf: Uint8Array): number {
  const t = TABLE;
  let c = (crc ^ 0xffffffff) >>> 0;
  let i = 0;
  const n = buf.length;
  while (n - i >= 8) {
    const a = (c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24))) >>> 0;
    c =
      t[7 * 256 + (a & 0xff)]! ^
      t[6 * 256 + ((a >>> 8) & 0xff)]! ^
      t[5 * 256 + ((a >>> 16) & 0xff)]! ^
      t[4 * 256 + (a >>> 24)]! ^
      t[3 * 256 + buf[i + 4]!]! ^
      t[2 * 256 + buf[i + 5]!]! ^
      t[256 + buf[i + 6]!]! ^
      t[buf[i + 7]!]!;
    i += 8;
  }
  while (i < n) c = t[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The GCS wire form of a CRC-32C: base64 of the 4 big-endian bytes. */
export function crc32cBase64(crc: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc >>> 0, 0);
  return b.toString('base64');
}

/** Incremental CRC-32C. */
export class Crc32c {
  private value = 0;

  update(buf: Uint8Array): this {
    this.value = crc32cUpdate(this.value, buf);
    return this;
  }

  digest(): number {
    return this.value;
  }

  base64(): string {
    return crc32cBase64(this.value);
  }
}
