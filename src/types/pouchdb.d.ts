// Minimal declarations of the PouchDB server packages (no types of their own): used by the drill's
// temporary standby (restore/drill-standby.ts) and by the test harness.

declare module 'pouchdb-core' {
  interface PouchDBOptions {
    adapter?: string;
    prefix?: string;
  }
  interface PouchDBConstructor {
    new (name: string, options?: PouchDBOptions): unknown;
    plugin(plugin: unknown): PouchDBConstructor;
    defaults(options: PouchDBOptions): PouchDBConstructor;
  }
  const PouchDB: PouchDBConstructor;
  export default PouchDB;
}

declare module 'pouchdb-adapter-memory' {
  const plugin: unknown;
  export default plugin;
}
declare module 'pouchdb-adapter-http' {
  const plugin: unknown;
  export default plugin;
}
declare module 'pouchdb-mapreduce' {
  const plugin: unknown;
  export default plugin;
}
declare module 'pouchdb-replication' {
  const plugin: unknown;
  export default plugin;
}

declare module 'express-pouchdb' {
  import type { Express } from 'express';
  interface ExpressPouchDBOptions {
    configPath?: string;
    logPath?: string;
    mode?: 'fullCouchDB' | 'minimumForPouchDB' | 'custom';
    overrideMode?: { include?: string[]; exclude?: string[] };
    inMemoryConfig?: boolean;
  }
  function expressPouchDB(PouchDB: unknown, options?: ExpressPouchDBOptions): Express;
  export default expressPouchDB;
}

declare module 's3rver' {
  import type { AddressInfo } from 'node:net';
  interface S3rverOptions {
    port?: number;
    address?: string;
    directory: string;
    silent?: boolean;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>;
  }
  class S3rver {
    constructor(options: S3rverOptions);
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
    reset(): void;
  }
  export default S3rver;
}
