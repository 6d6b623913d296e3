/**
 * The one status line a terminal shows under the logs (backup and restore progress). A log line written while
 * it is drawn would be glued to it (`…52.9 MiB/s[07:47:57] INFO: snapshot committed`): the logger erases it
 * first, and the owner draws it again at its next refresh.
 */
export interface StatusLine {
  /** Erases the line from the terminal (the cursor ends at column 0 of an empty line). */
  erase(): void;
}

let active: StatusLine | undefined;

export function setStatusLine(line: StatusLine | undefined): void {
  active = line;
}

/** Called before any other output goes to the terminal the status line is on. */
export function eraseStatusLine(): void {
  active?.erase();
}
