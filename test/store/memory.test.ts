import { MemoryStore } from '../../src/store/memory.js';
import { storeConformance } from './conformance.js';

storeConformance('memory', {
  async open() {
    return new MemoryStore('mem');
  },
  // The memory store keeps every object in memory by design: only the other properties apply.
  streamMemoryLimit: Number.POSITIVE_INFINITY,
});
