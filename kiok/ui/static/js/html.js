// Preact + htm: `html` tagged templates instead of JSX (no compiler, no eval), and the hooks.
import { h, render, Fragment } from "../vendor/preact.mjs";
import htm from "../vendor/htm.mjs";

export { h, render, Fragment };
export {
  useState, useEffect, useRef, useCallback, useMemo, useLayoutEffect,
} from "../vendor/hooks.mjs";
export const html = htm.bind(h);
