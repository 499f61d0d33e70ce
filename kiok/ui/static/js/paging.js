// Pages of a newest-first list kept in the URL, so a reload, a shared link or Back shows the
// same page: `?page=c1,c2` (the API's `nextCursor`s that led to the page shown, the current
// one last) and `?limit=N` (another page size). The DAG's runs, its grid and the audit log
// page this way; each view keeps its other query keys (filters) beside these two.
//
// A cursor is any position in the list (digits), so a trail this session was not given is
// checked once against the list's newest item: one past the newest (`?page=999999`) would
// show the newest items as a later page, one before the oldest an empty page. Such a trail,
// or a malformed one, is the first page (the view puts that in the URL).

/** {trail, limit, bad} of a location (path and query): the cursors, oldest last; `limit`
 * (null unless 1..maxLimit); `bad` when `page` holds anything but cursors going back in time. */
export function paging(where, maxLimit) {
  const query = new URLSearchParams(where.split("?")[1] || "");
  const raw = query.has("page") ? query.get("page").split(",") : [];
  const trail = raw.filter((c) => /^\d{1,20}$/.test(c)); // the API's cursors: up to 20 digits
  const n = Number(query.get("limit"));
  const ordered = trail.every((c, i) => i === 0 || Number(c) < Number(trail[i - 1]));
  return {
    trail,
    limit: query.has("limit") && Number.isInteger(n) && n >= 1 && n <= maxLimit ? n : null,
    bad: trail.length !== raw.length || !ordered,
  };
}

/** `path` with `keep` (a URLSearchParams of the view's other keys), `limit` and the trail. */
export function pagedUrl(path, keep, limit, trail) {
  const q = new URLSearchParams(keep);
  q.delete("page");
  q.delete("limit");
  if (limit) q.set("limit", String(limit));
  // Cursors are digits: the comma list is kept readable rather than percent-encoded.
  const query = [q.toString(), trail.length ? `page=${trail.join(",")}` : ""].filter(Boolean).join("&");
  return `${path}${query ? `?${query}` : ""}`;
}

/** Per list (a key such as `runs:<dag>`), the cursors the API gave in this session. */
const given = new Map();

const known = (list) => {
  if (!given.has(list)) given.set(list, new Set());
  return given.get(list);
};

/** Whether `trail` holds a cursor this session was not given for `list`: check the page. */
export const unchecked = (list, trail) => trail.some((c) => !known(list).has(c));

/** Remember the cursors of a page found real, and the `next` one it gave. */
export function remember(list, trail, next) {
  for (const c of trail) known(list).add(c);
  if (next) known(list).add(String(next));
}

/** Whether a page reached by an unchecked trail is not the page it claims: its first item is
 * the list's newest (`same` compares two items), or it is empty and the last. */
export function notThePage(items, next, newest, same) {
  return newest != null && ((items.length > 0 && same(items[0], newest)) || (items.length === 0 && !next));
}
