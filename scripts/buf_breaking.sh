#!/usr/bin/env bash
# buf breaking against the previous commit, once the API file exists there (a shallow clone, or
# the commit that adds the file, has nothing to compare with and says so).
set -euo pipefail
BUF=${1:-buf}
cd "$(dirname "$0")/.."
if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:protos/router/v1/router.proto 2>/dev/null; then
  "$BUF" breaking --against '.git#ref=HEAD~1'
  echo "buf breaking: no breaking change against HEAD~1"
else
  echo "buf breaking: HEAD~1 has no protos/router/v1/router.proto; nothing to compare"
fi
