#!/usr/bin/env bash
# The coding-agent CLIs the integration suite drives against the gateway, offline: Claude Code
# and Codex from npm (each ships its native binary inside the package; nothing else is
# downloaded,; Claude Code's postinstall only links its binary). Pinned, into .agent-clis/ (git-ignored).
#
#   scripts/setup-agent-clis.sh [DIR]
#
# Idempotent: a stamp names the versions installed. Node.js comes from Debian when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.agent-clis}"
CLAUDE_CODE=2.1.332
CODEX=0.171.0
STAMP="$DIR/.installed-$CLAUDE_CODE-$CODEX"

if [[ -f "$STAMP" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup-agent-clis: no npm, and it cannot be installed here (apt-get as root)" >&2
    exit 1
  fi
  echo "setup-agent-clis: installing Debian's nodejs and npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
echo "setup-agent-clis: installing @anthropic-ai/claude-code@$CLAUDE_CODE and @openai/codex@$CODEX into $DIR"
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$CLAUDE_CODE" "@openai/codex@$CODEX"
"$DIR/node_modules/.bin/claude" --version >/dev/null
"$DIR/node_modules/.bin/codex" --version >/dev/null
touch "$STAMP"
