import { GcsStore } from '../../src/store/gcs.js';
import { useServers } from '../harness/index.js';
import { storeConformance } from './conformance.js';

const servers = useServers({ gcs: true });

let n = 0;
storeConformance('gcs (fake)', {
  async open({ pageSize }) {
    const bucket = await servers.gcs.createBucket();
    return new GcsStore({
      name: 'gcs',
      bucket,
      prefix: ++n % 2 ? `backups/registry-${n}` : '',
      apiEndpoint: servers.gcs.url,
      projectId: servers.gcs.projectId,
      pageSize,
      maxRetries: 0,
    });
  },
});
