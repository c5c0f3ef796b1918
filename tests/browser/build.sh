#!/usr/bin/env bash
# Assemble the Hydrogen web app into dist/ from the npm packages (run `npm ci` first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
rm -rf dist
mkdir -p dist/assets dist/olm
./node_modules/.bin/esbuild src/app.js --bundle --format=esm --platform=browser --target=es2020 \
    --external:fs --external:path --external:crypto --outfile=dist/app.js --log-level=warning
cp src/index.html dist/
cp -r node_modules/hydrogen-view-sdk/asset-build/assets/. dist/assets/
cp node_modules/@matrix-org/olm/olm.js node_modules/@matrix-org/olm/olm.wasm node_modules/@matrix-org/olm/olm_legacy.js dist/olm/
cp node_modules/hydrogen-view-sdk/lib-build/sw.js dist/
