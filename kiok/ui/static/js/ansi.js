// Terminal output made safe and readable: SGR colour codes (16 and 256 colours, 24-bit, bold,
// italic, underline) become styled segments, every other escape sequence is dropped, and
// http(s) URLs are marked so the view can link them. Pure functions over strings: nothing
// here touches the DOM, and the view renders segments as text nodes, never as markup.

/** The SGR state between segments; a fresh object on every change so states can be shared. */
export const PLAIN = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false });

// CSI sequences (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other two-byte escapes,
// and stray control characters other than tab.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]/g;
// eslint-disable-next-line no-control-regex
const CSI_OR_OTHER = /\x1b\[([0-?]*)([ -/]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]/g;
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+[^\s<>"'`.,;:!?)\]}]/g;

const CUBE = [0, 95, 135, 175, 215, 255];

/** A 256-colour index as "#rrggbb" (0-15 are left to the theme: see `colour`). */
export function xterm256(n) {
  if (n < 16) return null;
  if (n < 232) {
    const i = n - 16;
    const hex = (v) => v.toString(16).padStart(2, "0");
    return `#${hex(CUBE[Math.floor(i / 36)])}${hex(CUBE[Math.floor(i / 6) % 6])}${hex(CUBE[i % 6])}`;
  }
  const g = (8 + (n - 232) * 10).toString(16).padStart(2, "0");
  return `#${g}${g}${g}`;
}

/** A colour value: {palette: 0..15} (themed by CSS classes) or {rgb: "#rrggbb"}. */
function colour(n) {
  return n < 16 ? { palette: n } : { rgb: xterm256(n) };
}

/** The state after the SGR parameters `params` ("1;31", "38;5;208", "" = reset). */
export function applySgr(state, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  const next = { ...state };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(next, PLAIN);
    else if (c === 1) next.bold = true;
    else if (c === 2) next.dim = true;
    else if (c === 3) next.italic = true;
    else if (c === 4) next.underline = true;
    else if (c === 22) { next.bold = false; next.dim = false; }
    else if (c === 23) next.italic = false;
    else if (c === 24) next.underline = false;
    else if (c >= 30 && c <= 37) next.fg = colour(c - 30);
    else if (c >= 90 && c <= 97) next.fg = colour(c - 90 + 8);
    else if (c === 39) next.fg = null;
    else if (c >= 40 && c <= 47) next.bg = colour(c - 40);
    else if (c >= 100 && c <= 107) next.bg = colour(c - 100 + 8);
    else if (c === 49) next.bg = null;
    else if (c === 38 || c === 48) {
      let value = null;
      if (codes[i + 1] === 5 && codes[i + 2] !== undefined) {
        value = colour(Math.max(0, Math.min(255, codes[i + 2])));
        i += 2;
      } else if (codes[i + 1] === 2 && codes[i + 4] !== undefined) {
        const hex = (v) => Math.max(0, Math.min(255, v)).toString(16).padStart(2, "0");
        value = { rgb: `#${hex(codes[i + 2])}${hex(codes[i + 3])}${hex(codes[i + 4])}` };
        i += 4;
      }
      if (value) next[c === 38 ? "fg" : "bg"] = value;
    }
  }
  return sameState(next, state) ? state : isPlain(next) ? PLAIN : Object.freeze(next);
}

function sameColour(a, b) {
  return a === b || (a !== null && b !== null && a.palette === b.palette && a.rgb === b.rgb);
}

function sameState(a, b) {
  return sameColour(a.fg, b.fg) && sameColour(a.bg, b.bg) && a.bold === b.bold &&
    a.dim === b.dim && a.italic === b.italic && a.underline === b.underline;
}

function isPlain(s) {
  return sameState(s, PLAIN);
}

/** The text without any escape sequence or control character (what search looks at). */
export function stripAnsi(text) {
  return text.indexOf("\x1b") === -1 && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text) ? text : text.replace(ESCAPES, "");
}

/**
 * One line as [{text, style}] segments starting from `state`, and the state at its end
 * (colours carry over to the next line as in a terminal).
 */
export function parseLine(line, state = PLAIN) {
  const segments = [];
  if (line.indexOf("\x1b") === -1 && !/[\x00-\x08\x0b-\x1f\x7f]/.test(line)) {
    if (line) segments.push({ text: line, style: state });
    return { segments, state };
  }
  let last = 0;
  let current = state;
  CSI_OR_OTHER.lastIndex = 0;
  for (let m = CSI_OR_OTHER.exec(line); m !== null; m = CSI_OR_OTHER.exec(line)) {
    if (m.index > last) segments.push({ text: line.slice(last, m.index), style: current });
    last = m.index + m[0].length;
    if (m[3] === "m" && !m[2]) current = applySgr(current, m[1]); // other CSI (cursor…): dropped
  }
  if (last < line.length) segments.push({ text: line.slice(last), style: current });
  return { segments, state: current };
}

/** The state at the end of `line` without building segments (cheap for lines not shown). */
export function stateAfter(line, state = PLAIN) {
  if (line.indexOf("\x1b[") === -1) return state;
  let current = state;
  CSI_OR_OTHER.lastIndex = 0;
  for (let m = CSI_OR_OTHER.exec(line); m !== null; m = CSI_OR_OTHER.exec(line)) {
    if (m[3] === "m" && !m[2]) current = applySgr(current, m[1]);
  }
  return current;
}

/** Split `text` into [{text, url}] pieces: `url` is set for http(s) links. */
export function splitUrls(text) {
  if (text.indexOf("http") === -1) return [{ text, url: null }];
  const out = [];
  let last = 0;
  URL_RE.lastIndex = 0;
  for (let m = URL_RE.exec(text); m !== null; m = URL_RE.exec(text)) {
    if (m.index > last) out.push({ text: text.slice(last, m.index), url: null });
    out.push({ text: m[0], url: m[0] });
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push({ text: text.slice(last), url: null });
  return out;
}

/** CSS classes for a style (palette colours and attributes are themed in app.css). */
export function styleClasses(style) {
  const cls = [];
  if (style.fg && style.fg.palette !== undefined) cls.push(`ansi-fg${style.fg.palette}`);
  if (style.bg && style.bg.palette !== undefined) cls.push(`ansi-bg${style.bg.palette}`);
  if (style.bold) cls.push("ansi-bold");
  if (style.dim) cls.push("ansi-dim");
  if (style.italic) cls.push("ansi-italic");
  if (style.underline) cls.push("ansi-underline");
  return cls.join(" ");
}

/** Inline colours for 256-colour and 24-bit values (set through the CSSOM, allowed by the CSP). */
export function styleColours(style) {
  const out = {};
  if (style.fg && style.fg.rgb) out.color = style.fg.rgb;
  if (style.bg && style.bg.rgb) out.backgroundColor = style.bg.rgb;
  return out;
}
