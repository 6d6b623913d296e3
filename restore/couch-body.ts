import { randomBytes } from 'node:crypto';
import type { AttEntry } from '../src/repo/format/couchdb-listing.js';
import { objectMembers } from '../src/util/json-split.js';
import { IntegrityError } from '../src/errors.js';

/**
 * Request bodies for writing one stored revision back into CouchDB. The stored body is the exact JSON
 * CouchDB served (with `_id`, `_rev`, `_revisions` and attachment stubs); it is never parsed into objects
 * and re-serialised — only its top-level members are located, so that numbers, escapes and key order go
 * back byte for byte. Only `_attachments` is rebuilt (and, for a new edit, `_rev` / `_revisions`).
 */

/** Attachment names that every server's multipart parser takes as they are (PouchDB's mangles some). */
export function multipartSafeName(name: string): boolean {
  return !/["\\%&\r\n\0]/.test(name);
}

export interface BodyEdit {
  /** Members to leave out (e.g. `_rev`, `_revisions` for a new edit). */
  drop?: string[];
  /** Raw JSON members to add, e.g. `"_rev":"3-…"`. */
  add?: string[];
}

/** The body's top-level members as raw `"key":value` strings, without `_attachments` and the dropped ones. */
export function bodyMembers(body: Buffer, edit: BodyEdit = {}, what = 'document'): string[] {
  let members: Map<string, { start: number; end: number }>;
  try {
    members = objectMembers(body);
  } catch (err) {
    throw new IntegrityError(`${what}: the stored body is not a JSON object (${(err as Error).message})`);
  }
  const out: string[] = [];
  for (const [k, r] of members) {
    if (k === '_attachments' || edit.drop?.includes(k)) continue;
    out.push(`${JSON.stringify(k)}:${body.toString('utf8', r.start, r.end)}`);
  }
  out.push(...(edit.add ?? []));
  return out;
}

function attMeta(a: AttEntry): Record<string, unknown> {
  const m: Record<string, unknown> = { content_type: a.type ?? 'application/octet-stream' };
  if (a.revpos !== undefined) m.revpos = a.revpos;
  return m;
}

export interface MultipartBody {
  contentType: string;
  length: number;
  /** The parts in order: strings and attachment indexes (their bytes go there). */
  parts: (Buffer | number)[];
}

/**
 * A `multipart/related` document: the JSON part with `"follows": true` stubs, then each attachment's bytes
 * (CouchDB matches them by order; PouchDB by the part's file name, which is therefore the attachment's name).
 */
export function multipartBody(members: string[], atts: AttEntry[]): MultipartBody {
  const boundary = `rb-${randomBytes(12).toString('hex')}`;
  const stubs: Record<string, unknown> = {};
  for (const a of atts) stubs[a.name] = { ...attMeta(a), length: a.length, follows: true };
  const json = `{${[...members, `"_attachments":${JSON.stringify(stubs)}`].join(',')}}`;
  const parts: (Buffer | number)[] = [
    Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${json}`),
  ];
  atts.forEach((a, i) => {
    parts.push(
      Buffer.from(
        `\r\n--${boundary}\r\nContent-Disposition: attachment; filename="${a.name}"\r\nContent-Type: ${(a.type ?? 'application/octet-stream').replace(/[\r\n]/g, '')}\r\nContent-Length: ${a.length}\r\n\r\n`,
      ),
    );
    parts.push(i);
  });
  parts.push(Buffer.from(`\r\n--${boundary}--`));
  const length = parts.reduce<number>((n, p) => n + (typeof p === 'number' ? atts[p]!.length : p.length), 0);
  return { contentType: `multipart/related; boundary="${boundary}"`, length, parts };
}

/** A JSON document with its attachments inline (base64), streamed: the same parts model, base64 for indexes. */
export function inlineBody(members: string[], atts: AttEntry[]): MultipartBody {
  if (!atts.length) {
    const json = Buffer.from(`{${members.join(',')}}`);
    return { contentType: 'application/json', length: json.length, parts: [json] };
  }
  const parts: (Buffer | number)[] = [];
  let head = `{${[...members, '"_attachments":{'].join(',')}`;
  atts.forEach((a, i) => {
    const meta = JSON.stringify(attMeta(a));
    head += `${i ? ',' : ''}${JSON.stringify(a.name)}:${meta.slice(0, -1)},"data":"`;
    parts.push(Buffer.from(head));
    parts.push(i);
    head = '"}';
  });
  parts.push(Buffer.from(`${head}}}`));
  const length = parts.reduce<number>(
    (n, p) => n + (typeof p === 'number' ? 4 * Math.ceil(atts[p]!.length / 3) : p.length),
    0,
  );
  return { contentType: 'application/json', length, parts };
}

/** Base64 of a byte stream, piece by piece (bytes carried over so that pieces join into one encoding). */
export async function* base64Stream(src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let carry = Buffer.alloc(0);
  for await (const b of src) {
    const buf = carry.length ? Buffer.concat([carry, b]) : b;
    const whole = buf.length - (buf.length % 3);
    if (whole) yield Buffer.from(buf.subarray(0, whole).toString('base64'));
    carry = Buffer.from(buf.subarray(whole));
  }
  if (carry.length) yield Buffer.from(carry.toString('base64'));
}
