import { createHash } from 'node:crypto';
import { writeStream, type StreamRef } from '../../repo/stream-ref.js';
import { bodyBytes, docPath } from '../../couchdb/client.js';
import type { DbRun } from './context.js';
import type { AttEntry, DocEntry } from '../../repo/format/couchdb-listing.js';

/** An attachment stub as it appears in `_attachments` of a body fetched without attachments. */
export interface AttStub {
  name: string;
  type?: string;
  digest: string;
  length: number;
  revpos?: number;
  encoding?: string;
  encodedLength?: number;
}

/** The stubs of a body's `_attachments`, checked; a malformed one is reported and left out. */
export function attachmentStubs(run: DbRun, id: string, atts: unknown): AttStub[] {
  if (atts === undefined) return [];
  if (typeof atts !== 'object' || atts === null || Array.isArray(atts)) {
    run.findings.add({
      severity: 'error',
      code: 'attachment-malformed',
      object: `${run.db}/${id}`,
      message: '_attachments is not an object',
    });
    return [];
  }
  const out: AttStub[] = [];
  for (const [name, v] of Object.entries(atts as Record<string, unknown>)) {
    const s = v as {
      content_type?: unknown;
      digest?: unknown;
      length?: unknown;
      revpos?: unknown;
      encoding?: unknown;
      encoded_length?: unknown;
    };
    if (!s || typeof s.digest !== 'string' || !Number.isSafeInteger(s.length) || (s.length as number) < 0) {
      run.findings.add({
        severity: 'error',
        code: 'attachment-malformed',
        object: `${run.db}/${id}/${name}`,
        message: 'attachment stub without digest or length; not backed up',
      });
      continue;
    }
    const stub: AttStub = { name, digest: s.digest, length: s.length as number };
    if (typeof s.content_type === 'string') stub.type = s.content_type;
    if (typeof s.revpos === 'number') stub.revpos = s.revpos;
    if (typeof s.encoding === 'string') stub.encoding = s.encoding;
    if (typeof s.encoded_length === 'number') stub.encodedLength = s.encoded_length;
    out.push(stub);
  }
  return out;
}

export function attEntry(stub: AttStub, data: StreamRef): AttEntry {
  const a: AttEntry = {
    name: stub.name,
    type: stub.type,
    digest: stub.digest,
    length: stub.length,
    revpos: stub.revpos,
    data,
  };
  if (stub.encoding !== undefined) a.encoding = stub.encoding;
  if (stub.encodedLength !== undefined) a.encodedLength = stub.encodedLength;
  return a;
}

/** Same bytes: same name, digest and length (a digest alone is MD5, and the name ties it to the document). */
function sameAtt(
  a: { name: string; digest: string; length: number },
  b: { name: string; digest: string; length: number },
): boolean {
  return a.name === b.name && a.digest === b.digest && a.length === b.length;
}

/** The stored data of an attachment the previous listing already has for this document, if any. */
export function reusable(prev: DocEntry | undefined, stub: AttStub): StreamRef | undefined {
  if (!prev) return undefined;
  for (const l of prev.leaves) for (const a of l.atts ?? []) if (sameAtt(a, stub)) return a.data;
  return undefined;
}

/**
 * Downloads one attachment of one revision (`GET /db/{id}/{name}?rev=…`) and streams it into the
 * repository: never base64, never whole in memory. Returns undefined when the revision or attachment is
 * gone (404: compacted since the changes were read; the document comes back in the next round).
 */
export async function downloadAttachment(
  run: DbRun,
  id: string,
  rev: string,
  stub: AttStub,
): Promise<StreamRef | undefined> {
  const path = `${run.path}/${docPath(id)}/${encodeURIComponent(stub.name)}?rev=${encodeURIComponent(rev)}`;
  return run.client.exchange('GET', path, { db: run.db, accept: '*/*', notFound: 'return' }, async (res) => {
    if (res.status === 404) return undefined;
    let size = 0;
    const md5 = createHash('md5');
    const progress = run.ctx.progress;
    const counted = (async function* () {
      for await (const chunk of bodyBytes(res)) {
        size += chunk.length;
        progress.bytes += chunk.length;
        md5.update(chunk);
        yield chunk;
      }
    })();
    const ref = await writeStream(run.ctx.writer, counted, 'bulk');
    run.stats.attachmentsDownloaded++;
    run.stats.attachmentBytesDownloaded += size;
    const object = `${run.db}/${id}/${stub.name}`;
    if (size !== stub.length) {
      run.findings.add({
        severity: 'error',
        code: 'attachment-length-mismatch',
        object,
        message: `attachment of revision ${rev} is ${size} bytes, its stub says ${stub.length}; kept as read`,
      });
    } else if (stub.encoding === undefined && stub.digest.startsWith('md5-')) {
      const got = `md5-${md5.digest('base64')}`;
      if (got !== stub.digest) {
        run.findings.add({
          severity: 'warning',
          code: 'attachment-digest-mismatch',
          object,
          message: `attachment of revision ${rev} has digest ${got}, its stub says ${stub.digest}; kept as read`,
        });
      }
    }
    return ref;
  });
}
