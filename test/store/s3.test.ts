import { S3Store } from '../../src/store/s3.js';
import { useServers } from '../harness/index.js';
import { storeConformance } from './conformance.js';

const servers = useServers({ s3: true });

let n = 0;
storeConformance('s3 (s3rver)', {
  async open({ pageSize }) {
    const bucket = await servers.s3.createBucket();
    const store = new S3Store({
      name: 'aws',
      bucket,
      // Half the stores under a prefix, so that prefix handling is covered too.
      prefix: ++n % 2 ? `backups/registry-${n}` : '',
      region: servers.s3.region,
      endpoint: servers.s3.endpoint,
      forcePathStyle: true,
      credentials: servers.s3.credentials,
      pageSize,
      partSize: 5 * 1024 * 1024,
      queueSize: 1,
    });
    return store;
  },
  // The SDK path holds a few parts at a time (lib-storage copies and concatenates each 5 MiB part, and
  // sent request bodies stay referenced for a moment), plus s3rver in the same process: measured 15-31 MiB
  // whatever the body size. A larger body keeps "bounded" and "holds it all" clearly apart.
  streamSize: 64 * 1024 * 1024,
  streamMemoryLimit: 44 * 1024 * 1024,
  knownGaps: {
    listOrder: 's3rver walks its directory tree ("a/b" before "a-b"); S3 lists in UTF-8 byte order',
  },
});
