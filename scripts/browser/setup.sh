#!/usr/bin/env bash
# What the browser test needs, installed when missing: Debian's chromium (apt-get; the
# machine's own package, not a browser downloaded by a test tool) and playwright-core from
# the npm registry, pinned by tests/browser/package-lock.json into tests/browser/node_modules.
set -euo pipefail
cd "$(dirname "$0")/../.."

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    echo "browser: installing Debian's chromium" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get install -y --no-install-recommends chromium >/dev/null ||
        { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y --no-install-recommends chromium >/dev/null; }
fi
[ -x "$chromium" ] || { echo "browser: no chromium at $chromium" >&2; exit 1; }
command -v node >/dev/null || { echo "browser: node is not installed" >&2; exit 1; }
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "browser: installing playwright-core (tests/browser/package-lock.json)" >&2
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
fi
