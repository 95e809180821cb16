#!/usr/bin/env bash
# Vendor the studio's one JavaScript library (uPlot, MIT) from the npm registry into the package, so nothing
# loads from a CDN and installing needs no npm. Re-runnable; bump UPLOT_VERSION and commit the result.
set -euo pipefail
UPLOT_VERSION="${UPLOT_VERSION:-1.6.32}"
cd "$(dirname "$0")/.."
target=pipeline/studio/static/vendor/uplot
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@${UPLOT_VERSION}" >/dev/null && tar -xzf "uplot-${UPLOT_VERSION}.tgz")
mkdir -p "$target"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$work/package/LICENSE" "$target/"
echo "uplot ${UPLOT_VERSION}" > "$target/VERSION"
ls -l "$target"
