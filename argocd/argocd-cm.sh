#!/usr/bin/env bash
# Prints the argocd-cm entries that install AUREN's health check and actions into Argo CD,
# generated from the files under resource_customizations/ (so they never drift from the tested
# scripts). Apply with:
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file <(bash argocd/argocd-cm.sh)
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/resource_customizations/auren.io/AurenRuntime"
indent() { sed "s/^/$1/"; }
echo "data:"
echo "  resource.customizations.health.auren.io_AurenRuntime: |"
indent "    " < "$dir/health.lua"
echo "  resource.customizations.actions.auren.io_AurenRuntime: |"
echo "    discovery.lua: |"
indent "      " < "$dir/actions/discovery.lua"
echo "    definitions:"
for action in promote abort retry; do
  echo "    - name: $action"
  echo "      action.lua: |"
  indent "        " < "$dir/actions/$action/action.lua"
done
