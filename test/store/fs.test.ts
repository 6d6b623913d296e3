import { FsStore } from '../../src/store/fs.js';
import { tmpDirSync } from '../harness/index.js';
import { storeConformance } from './conformance.js';

let n = 0;
const root = tmpDirSync('regbackup-fsstore-');

storeConformance('fs', {
  async open() {
    return new FsStore({ name: 'local', root: `${root}/store-${++n}` });
  },
});
