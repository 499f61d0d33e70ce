// A log held as lines, for a view that shows only the lines on screen: appending a fetched
// chunk splits it at newlines (the last line stays open until its newline arrives) and
// records the colour state each line starts in, so any line can be drawn on its own.
// Searching is incremental: matches of lines already scanned are kept as the log grows.
import { PLAIN, stateAfter, stripAnsi } from "./ansi.js";

/** At most this many matches are listed (the count then says "10000+"). */
export const MAX_MATCHES = 10000;

export class LogBuffer {
  constructor() {
    this.lines = [""];
    // The SGR state each line starts in; most lines share the PLAIN object.
    this.starts = [PLAIN];
    this.bytes = 0;
    this.query = "";
    this.matches = [];
    this.scanned = 0; // lines [0, scanned) are searched (all closed lines)
  }

  /** Lines with text (an open empty last line does not count). */
  get lineCount() {
    const n = this.lines.length;
    return this.lines[n - 1] === "" ? n - 1 : n;
  }

  append(text) {
    if (!text) return;
    const parts = text.split("\n");
    const last = this.lines.length - 1;
    this.lines[last] += parts[0];
    for (let i = 1; i < parts.length; i++) {
      const prev = this.lines.length - 1;
      this.starts.push(stateAfter(this.lines[prev], this.starts[prev]));
      this.lines.push(parts[i]);
    }
    if (this.query) this.searchMore();
  }

  /** Start a new search (case-insensitive, plain text, escapes ignored). */
  search(query) {
    this.query = query.toLowerCase();
    this.matches = [];
    this.scanned = 0;
    if (this.query) this.searchMore();
  }

  searchMore() {
    // The open last line is searched again next time, as it may still grow.
    this.matches = this.matches.filter((m) => m.line < this.scanned);
    const q = this.query;
    const end = this.lines.length;
    for (let i = this.scanned; i < end && this.matches.length < MAX_MATCHES; i++) {
      const text = stripAnsi(this.lines[i]).toLowerCase();
      for (let at = text.indexOf(q); at !== -1 && this.matches.length < MAX_MATCHES; at = text.indexOf(q, at + q.length)) {
        this.matches.push({ line: i, start: at, end: at + q.length });
      }
    }
    this.scanned = end - 1;
  }

  /** The matches on line `i` as [start, end) ranges of its text without escapes. */
  matchesOn(i) {
    const out = [];
    if (!this.query) return out;
    // Matches are in line order: binary search for the first on line i.
    let lo = 0;
    let hi = this.matches.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.matches[mid].line < i) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo; k < this.matches.length && this.matches[k].line === i; k++) out.push(k);
    return out;
  }
}
