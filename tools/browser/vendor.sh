#!/usr/bin/env bash
# Copies the dashboard's chart library from npm (pinned in package-lock.json beside it) into engine/api/static/vendor/, with
# its licences. Run by hand when the pin changes; the copy is committed, so neither serving nor tests need npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$(dirname "$0")"  # package.json and package-lock.json live beside this script
npm ci --no-audit --no-fund --silent
dest="$root/engine/api/static/vendor"
mkdir -p "$dest"
# Without its sourceMappingURL line the browser has nothing to ask the server for beyond the file itself.
sed '/^\/\/# sourceMappingURL=/d' node_modules/chart.js/dist/chart.umd.min.js > "$dest/chart.umd.min.js"
cp node_modules/chart.js/LICENSE.md "$dest/chart.js.LICENSE.md"
cp node_modules/@kurkle/color/LICENSE "$dest/kurkle-color.LICENSE"  # bundled inside chart.umd.min.js
version="$(node -p 'require("./node_modules/chart.js/package.json").version')"
rm -rf node_modules
echo "vendored chart.js $version into $dest"
