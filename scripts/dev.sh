#!/usr/bin/env bash
# Creates a sample desired-state repository in .dev/demo with the vt just built,
# validates it and shows it. The local stack (controller, hosts, edge) that
# `vt dev` will run on it is not built yet.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vt="$root/target/debug/vt"
repo="$root/.dev/demo"

if [ ! -f "$repo/vt.yaml" ]; then
  mkdir -p "$root/.dev"
  "$vt" init "$repo"
  cd "$repo"
  "$vt" org create acme
  "$vt" project create shop
  "$vt" app create web --image registry.local/web:1 --port 8080
  "$vt" env create prod --app web --instances 2
  git add -A && git -c user.name=vt -c user.email=vt@localhost commit -qm "sample app acme/shop/web"
fi
cd "$repo"
"$vt" validate
"$vt" list
echo
echo "sample repository: $repo (try: cd $repo && $vt get env prod)"
