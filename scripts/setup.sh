#!/usr/bin/env bash
# Installs what vt's build and tests need on Debian 12. Idempotent: installs only
# what is missing, so it is cheap to run before every `just test`.
set -euo pipefail

packages=(git pkg-config curl qemu-system-x86 e2fsprogs lz4 cpio busybox-static iproute2 nftables file docker-registry umoci skopeo haproxy openssh-client openssh-server nginx-light fcgiwrap apache2-utils)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo is missing; install Rust with rustup" >&2; exit 1; }
