#!/usr/bin/env bash
# The local stack on this machine: a sample desired-state repository in
# .dev/demo, a controller tracking it, and two hosts with the simulated runtime.
# Prints the status, then follows events until Ctrl-C, which stops everything
# (state stays in .dev/ for the next run; `rm -rf .dev` starts fresh).
# `vt dev` will replace this script; the microVM runtime replaces `--runtime sim`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vt="$root/target/debug/vt"
dev="$root/.dev"
repo="$dev/demo"
mkdir -p "$dev"

if [ ! -f "$repo/vt.yaml" ]; then
  "$vt" init "$repo"
  (
    cd "$repo"
    "$vt" org create acme
    "$vt" project create shop
    "$vt" app create web --image registry.local/web:1 --port 8080
    "$vt" env create prod --app web --instances 2
    git add -A && git -c user.name=vt -c user.email=vt@localhost commit -qm "sample app acme/shop/web"
  )
fi
"$vt" -C "$repo" validate

if [ ! -f "$dev/fleet/fleet.json" ]; then
  "$vt" fleet init "$repo" --state-dir "$dev/fleet" --quic 127.0.0.1:7443 --http 127.0.0.1:7080 >/dev/null
fi
token_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_token"])' "$1"; }
export VT_CONTROLLER=http://127.0.0.1:7080 VT_TOKEN="$(token_of "$dev/fleet/fleet.json")"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$vt" fleet run --state-dir "$dev/fleet" >"$dev/controller.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do "$vt" hosts >/dev/null 2>&1 && break; sleep 0.1; done
join=$("$vt" fleet token create --role host --state-dir "$dev/fleet")
for h in host-1 host-2; do
  "$vt" host run --token "$join" --name "$h" --state-dir "$dev/$h" --runtime sim >"$dev/$h.log" 2>&1 &
  pids+=($!)
done
sleep 2
"$vt" status
echo
echo "local stack running (logs in $dev). In another shell:"
echo "  export VT_CONTROLLER=$VT_CONTROLLER VT_TOKEN=$VT_TOKEN"
echo "  cd $repo && \$EDITOR orgs/acme/shop/web/envs/prod.yaml && git commit -am change   # deploys"
echo "following events; Ctrl-C stops the stack"
"$vt" events -f
