// Where a JSON document breaks, for the policy editor (pure: no imports, so the unit tests
// run it under node).

/** Where a JSON.parse error is: {line, message}, from the engine's "(line L column C)" or its
 * "position N" (counted in `text`), or line null when the engine says neither. */
export function jsonProblem(text) {
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    const message = String(e.message);
    const lc = /line (\d+) column (\d+)/.exec(message);
    if (lc) return { line: Number(lc[1]), message };
    const pos = /position (\d+)/.exec(message);
    if (pos) return { line: text.slice(0, Number(pos[1])).split("\n").length, message };
    return { line: /Unexpected end/.test(message) ? text.split("\n").length : null, message };
  }
}
