// Where a JSON document breaks, for the policy editor (pure: no imports, so the unit tests
// run it under node).

/** Where a JSON.parse error is: {line, message}, from the engine's "(line L column C)" or its
 * "position N" (counted in `text`), or else from our own scan of `text` (recent V8 says
 * neither: "Unexpected token ']', … is not valid JSON"). */
export function jsonProblem(text) {
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    const message = String(e.message);
    const lc = /line (\d+) column (\d+)/.exec(message);
    if (lc) return { line: Number(lc[1]), message };
    const pos = /position (\d+)/.exec(message);
    const at = pos ? Number(pos[1]) : errorOffset(text);
    return { line: at === null ? null : text.slice(0, at).split("\n").length, message };
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const HEX4 = /[0-9a-fA-F]{4}/y;

/** The offset of the first character a JSON parser must refuse (`text.length` when the text
 * ends too early: an unclosed string, array or object), or null if `text` is valid JSON. A
 * trailing comma is refused at the `]` or `}` after it, as engines that give a position do. */
export function errorOffset(text) {
  let i = 0;
  const fail = () => { throw new RangeError("json"); };
  const ws = () => { while (i < text.length && " \t\n\r".includes(text[i])) i += 1; };
  const expect = (c) => { if (text[i] !== c) fail(); i += 1; };
  const match = (re) => {
    re.lastIndex = i;
    if (!re.test(text)) fail();
    i = re.lastIndex;
  };
  const string = () => {
    expect('"');
    while (i < text.length && text[i] !== '"') {
      if (text[i] < " ") fail();
      if (text[i] === "\\") {
        i += 1;
        if (text[i] === "u") {
          i += 1;
          match(HEX4);
        } else if (i < text.length && '"\\/bfnrt'.includes(text[i])) {
          i += 1;
        } else {
          fail();
        }
      } else {
        i += 1;
      }
    }
    expect('"');
  };
  // Items of an array or members of an object, up to the closing bracket.
  const items = (close, item) => {
    ws();
    if (text[i] === close) {
      i += 1;
      return;
    }
    for (;;) {
      item();
      ws();
      if (text[i] === close) {
        i += 1;
        return;
      }
      expect(",");
      ws();
    }
  };
  const value = (depth) => {
    if (depth > 512) fail();
    ws();
    const c = text[i];
    if (c === "{") {
      i += 1;
      items("}", () => {
        string();
        ws();
        expect(":");
        value(depth + 1);
      });
    } else if (c === "[") {
      i += 1;
      items("]", () => value(depth + 1));
    } else if (c === '"') {
      string();
    } else if (c === "t" || c === "f" || c === "n") {
      const word = { t: "true", f: "false", n: "null" }[c];
      if (!text.startsWith(word, i)) fail();
      i += word.length;
    } else {
      match(NUMBER);
    }
  };
  try {
    value(0);
    ws();
    if (i < text.length) fail();
    return null;
  } catch (e) {
    if (e instanceof RangeError && e.message === "json") return Math.min(i, text.length);
    throw e;
  }
}
