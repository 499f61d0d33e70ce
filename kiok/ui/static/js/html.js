// Preact + htm: `html` tagged templates instead of JSX (no compiler, no eval), and the hooks.
//
// Every view renders data as text nodes, never as markup. One more rule holds for all of them
// here: Unicode direction controls (embeddings, overrides and isolates, U+202A-202E and
// U+2066-2069) and the line and paragraph separators (U+2028, U+2029) in text are shown as
// "<U+202E>", not obeyed. Obeyed, they make text display in another order than it reads
// ("\u202Egnp.exe" shows as "exe.png") or break a line where it has none, so a trigger
// argument, a DAG's description or source, task output or the user name of a failed login
// could show the admin something other than what it is. Right-to-left letters are untouched.
import { h as createElement, render, Fragment } from "../vendor/preact.mjs";
import htm from "../vendor/htm.mjs";

export { render, Fragment };
export {
  useState, useEffect, useRef, useCallback, useMemo, useLayoutEffect,
} from "../vendor/hooks.mjs";

const CONTROL = /[\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const CONTROLS = /[\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with each of those characters written out as "<U+XXXX>". */
export function visible(text) {
  return CONTROL.test(text)
    ? text.replace(CONTROLS, (c) => `<U+${c.charCodeAt(0).toString(16).toUpperCase()}>`)
    : text;
}

function shown(child) {
  if (typeof child === "string") return visible(child);
  if (Array.isArray(child)) return child.some(needsShowing) ? child.map(shown) : child;
  return child;
}

function needsShowing(child) {
  return typeof child === "string" ? CONTROL.test(child) : Array.isArray(child) && child.some(needsShowing);
}

/** Preact's `h`, with text children and titles passed through `visible` (children copied
 *  only when one holds such a character: a grid of 25,000 cells renders through here). */
export function h(type, props, ...children) {
  if (props && typeof props.title === "string" && CONTROL.test(props.title)) {
    props = { ...props, title: visible(props.title) };
  }
  return createElement(type, props, ...(children.some(needsShowing) ? children.map(shown) : children));
}

export const html = htm.bind(h);
