#!/usr/bin/env bash
# Builds vt-init, the guest's PID 1, as a static release binary:
#   target/guest/vt-init
# It has its own --target-dir (target/guest-build) so the static RUSTFLAGS do
# not invalidate the workspace's normal build cache. Fails unless the result
# is really static (no interpreter, no shared libraries).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

RUSTFLAGS="-C target-feature=+crt-static" \
CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --release -p vt-init --bin vt-init \
    --target x86_64-unknown-linux-gnu --target-dir target/guest-build

built=target/guest-build/x86_64-unknown-linux-gnu/release/vt-init
mkdir -p target/guest
cp "$built" target/guest/vt-init.tmp
mv target/guest/vt-init.tmp target/guest/vt-init
bin=target/guest/vt-init

if command -v file >/dev/null; then
  info=$(file -b "$bin")
  case "$info" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "build-init: $bin is not static: $info" >&2; exit 1 ;;
  esac
fi
if command -v ldd >/dev/null && ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "build-init: $bin links shared libraries:" >&2
  ldd "$bin" >&2
  exit 1
fi
"$bin" --version >/dev/null
echo "$root/$bin"
