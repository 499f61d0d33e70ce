#!/usr/bin/env bash
# Refresh the admin UI's vendored JavaScript (kiok/ui/static/vendor/) from the npm registry.
# Developers only: CI and `pip install` never run this, and the UI loads nothing from a CDN.
# Usage: kiok/ui/vendor.sh [preact-version] [htm-version] [dagre-version]
# Then review `git diff kiok/ui/static/vendor`, and run tests/e2e/test_ui.py.
set -euo pipefail
PREACT=${1:-11}
HTM=${2:-3}
DAGRE=${3:-3}
out="$(cd "$(dirname "$0")" && pwd)/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "preact@$PREACT" "htm@$HTM" "@dagrejs/dagre@$DAGRE" >packed.txt
unpack() { mkdir -p "$1" && tar -xzf "$2" -C "$1" && node -p "require('./$1/package/package.json').version"; }
v_preact=$(unpack preact preact-*.tgz)
v_htm=$(unpack htm htm-*.tgz)
v_dagre=$(unpack dagre dagrejs-dagre-*.tgz)

cp preact/package/dist/preact.mjs "$out/preact.mjs"
# The one change to an upstream file: hooks import the bare specifier "preact", which a
# browser resolves only through an import map (an inline script, refused by the CSP).
sed 's|from"preact"|from"./preact.mjs"|' preact/package/hooks/dist/hooks.mjs >"$out/hooks.mjs"
grep -q 'from"./preact.mjs"' "$out/hooks.mjs" || { echo "hooks.mjs: import of preact not found" >&2; exit 1; }
cp htm/package/dist/htm.mjs "$out/htm.mjs"
cp dagre/package/dist/dagre.esm.js "$out/dagre.esm.js"
cp preact/package/LICENSE "$out/LICENSE.preact.txt"
cp htm/package/LICENSE "$out/LICENSE.htm.txt"
cp dagre/package/LICENSE "$out/LICENSE.dagre.txt"
cp dagre/package/dist/dagre.esm.js.LEGAL.txt "$out/dagre.esm.js.LEGAL.txt"

sha() { sha256sum "$out/$1" | cut -d' ' -f1; }
tarball_sha() { sha256sum "$1" | cut -d' ' -f1; }
cat >"$out/VENDOR.md" <<MD
# Vendored browser libraries of the admin UI

Refreshed with \`kiok/ui/vendor.sh\` (\`npm pack\`); committed so that installing kiok needs
no npm and the UI loads nothing from another origin. Served under \`/ui/<hash>/vendor/\`.

| package | version | licence | npm tarball sha256 | file here | taken from | sha256 |
|---|---|---|---|---|---|---|
| preact | $v_preact | MIT (LICENSE.preact.txt) | $(tarball_sha preact-*.tgz) | preact.mjs | dist/preact.mjs | $(sha preact.mjs) |
| preact (hooks) | $v_preact | MIT (LICENSE.preact.txt) | (same) | hooks.mjs | hooks/dist/hooks.mjs, its \`from"preact"\` rewritten to \`from"./preact.mjs"\` | $(sha hooks.mjs) |
| htm | $v_htm | Apache-2.0 (LICENSE.htm.txt) | $(tarball_sha htm-*.tgz) | htm.mjs | dist/htm.mjs | $(sha htm.mjs) |
| @dagrejs/dagre | $v_dagre | MIT (LICENSE.dagre.txt; bundled graphlib and helpers: dagre.esm.js.LEGAL.txt) | $(tarball_sha dagrejs-dagre-*.tgz) | dagre.esm.js | dist/dagre.esm.js | $(sha dagre.esm.js) |

Why not htm's \`preact/standalone.mjs\` (preact + hooks + htm in one file): it bundles the
Preact 10 that htm 3 was built against (devDependency \`preact@^10.2.0\`), not Preact 11.
Three unbundled files need no bundler and stay byte-identical to upstream (but for the one
import above); the browser loads them in parallel (\`modulepreload\`).
MD
echo "vendored preact $v_preact, htm $v_htm, @dagrejs/dagre $v_dagre into $out"
