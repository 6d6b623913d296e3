import { setStatusLine } from './status-line.js';
import { formatBytes, formatDuration } from './units.js';

/**
 * Progress of a long operation (backup, restore): counters that the work updates, and, on a TTY, one status
 * line on stderr redrawn a few times a second. Without a TTY (cron, --json, --quiet) it only counts.
 */
export class Progress {
  docs = 0;
  docsTotal = 0;
  files = 0;
  /** Files expected (when known: a tarball store's count in the previous snapshot), for the ETA. */
  filesTotal = 0;
  bytes = 0;
  /** Bytes expected in all (when known), for the ETA. */
  bytesTotal = 0;
  phase = '';
  private readonly start = Date.now();
  private timer?: NodeJS.Timeout;
  private lastLen = 0;

  constructor(private readonly out?: NodeJS.WriteStream) {
    if (out?.isTTY) {
      this.timer = setInterval(() => this.draw(), 250);
      this.timer.unref();
      setStatusLine({ erase: () => this.erase() });
    }
  }

  line(): string {
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0 ? this.bytes / secs : 0;
    const parts = [this.phase];
    if (this.docs || this.docsTotal)
      parts.push(
        `docs ${this.docs.toLocaleString('en-US')}${this.docsTotal ? `/${this.docsTotal.toLocaleString('en-US')}` : ''}`,
      );
    if (this.files || this.filesTotal)
      parts.push(
        `files ${this.files.toLocaleString('en-US')}${this.filesTotal ? `/${this.filesTotal.toLocaleString('en-US')}` : ''}`,
      );
    parts.push(formatBytes(this.bytes), `${formatBytes(rate)}/s`);
    if (this.bytesTotal > this.bytes && rate > 0)
      parts.push(`ETA ${formatDuration(((this.bytesTotal - this.bytes) / rate) * 1000)}`);
    else if (this.docsTotal > this.docs && this.docs > 0)
      parts.push(`ETA ${formatDuration((secs * 1000 * (this.docsTotal - this.docs)) / this.docs)}`);
    else if (this.filesTotal > this.files && this.files > 0)
      parts.push(`ETA ${formatDuration((secs * 1000 * (this.filesTotal - this.files)) / this.files)}`);
    return parts.filter(Boolean).join(' · ');
  }

  /** Draws the line (the timer does, every 250 ms). */
  draw(): void {
    if (!this.out) return;
    const l = this.line().slice(0, (this.out.columns || 100) - 1);
    this.out.write(`\r${l}${' '.repeat(Math.max(0, this.lastLen - l.length))}`);
    this.lastLen = l.length;
  }

  /** Blanks the drawn line; the next draw brings it back. */
  erase(): void {
    if (this.out && this.lastLen) this.out.write(`\r${' '.repeat(this.lastLen)}\r`);
    this.lastLen = 0;
  }

  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      setStatusLine(undefined);
    }
    this.timer = undefined;
    this.erase();
  }
}
