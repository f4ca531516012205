#!/usr/bin/env bash
# Copies the repository's policies/ into the Helm chart (deploy/helm/rollgate/policies), which
# is what the chart's ConfigMap is built from. A copy, not a symlink: Helm does not reliably
# follow a symlink that leaves the chart, and `helm package` must carry the files.
#
#   deploy/helm/sync-policies.sh          refresh the copy (run after editing policies/)
#   deploy/helm/sync-policies.sh --check  exit 1 and show the difference if the copy is stale
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="$root/policies"
dst="$root/deploy/helm/rollgate/policies"

case "${1:-}" in
  --check)
    if ! diff -r "$src" "$dst" >/dev/null 2>&1; then
      echo "deploy/helm/rollgate/policies differs from policies/ (run deploy/helm/sync-policies.sh):" >&2
      diff -r "$src" "$dst" 2>&1 | head -20 >&2 || true
      exit 1
    fi
    echo "chart policies in sync with policies/ ($(find "$dst" -type f | wc -l) files)"
    ;;
  "")
    rm -rf "$dst"
    cp -R "$src" "$dst"
    echo "copied $(find "$dst" -type f | wc -l) files from policies/ to deploy/helm/rollgate/policies"
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
