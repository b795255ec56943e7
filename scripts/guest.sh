#!/usr/bin/env bash
# Builds the guest artifacts the microVM runtime boots, cached outside the repo:
#   $VT_GUEST_DIR (default ~/.cache/vt/guest)/<kernel version>/vmlinux          uncompressed kernel for PVH boot
#   $VT_GUEST_DIR/<kernel version>/initramfs.cpio.gz                              vt-init as /init, virtio modules, busybox
#   $VT_GUEST_DIR/current -> <kernel version>
# The kernel is Debian's cloud kernel package, downloaded and unpacked, never installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${VT_GUEST_DIR:-$HOME/.cache/vt/guest}"
mkdir -p "$cache"
need() { command -v "$1" >/dev/null || { echo "guest: $1 is missing; run 'just setup'" >&2; exit 1; }; }
need apt-get; need dpkg-deb; need lz4; need cpio; need gzip

# 1. The kernel package: the version the cloud meta-package points at.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$pkg" ] || { echo "guest: cannot find the Debian cloud kernel package" >&2; exit 1; }
kver=${pkg#linux-image-}
kver=${kver%-unsigned}
out="$cache/$kver"
mkdir -p "$out"

if [ ! -s "$out/vmlinux" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -qq "$pkg")
  dpkg-deb -x "$work"/*.deb "$work/x"
  vmlinuz=$(ls "$work"/x/boot/vmlinuz-*)
  # The bzImage carries an LZ4 frame (magic 02 21 4c 18); the ELF vmlinux is inside.
  offset=$(grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -1 | cut -d: -f1)
  tail -c +"$((offset + 1))" "$vmlinuz" | lz4 -dc > "$work/vmlinux" 2>/dev/null || true
  head -c 4 "$work/vmlinux" | grep -q ELF || { echo "guest: could not extract vmlinux from $vmlinuz" >&2; exit 1; }
  rm -rf "$out/modules"
  mkdir -p "$out/modules"
  cp -a "$work"/x/lib/modules/*/kernel "$out/modules/"
  cp "$vmlinuz" "$out/vmlinuz"
  mv "$work/vmlinux" "$out/vmlinux"
fi

# 2. vt-init, static.
"$root/scripts/build-init.sh" >/dev/null
init_bin="$root/target/guest/vt-init"

# 3. The initramfs: /init, the virtio modules in dependency order, busybox.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,run,rootfs,lib/modules}
cp "$init_bin" "$stage/init"
if [ -x /bin/busybox ] && file /bin/busybox | grep -q static; then cp /bin/busybox "$stage/bin/busybox"; fi
wanted="virtio_mmio virtio_blk virtio_net virtio_console"
# No modules.dep in the package (depmod writes it at install): read each
# module's `depends=` from its .modinfo section instead.
modfile() { find "$out/modules/kernel" \( -name "$1.ko" -o -name "$(echo "$1" | tr _ -).ko" \) | head -1; }
declare -A seen=()
: > "$stage/lib/modules/load-order"
add() { # add module $1 after its dependencies
  local name=$1 file deps
  [ -n "${seen[$name]:-}" ] && return
  seen[$name]=1
  file=$(modfile "$name")
  [ -n "$file" ] || { echo "guest: module $name not found in the kernel package" >&2; exit 1; }
  deps=$(grep -a -o -m1 'depends=[a-z0-9_,-]*' "$file" | head -1 | cut -d= -f2 | tr , ' ')
  for d in $deps; do add "$d"; done
  cp "$file" "$stage/lib/modules/$name.ko"
  echo "/lib/modules/$name.ko" >> "$stage/lib/modules/load-order"
}
for m in $wanted; do add "$m"; done
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
ln -sfn "$kver" "$cache/current"
echo "guest: $out (kernel $kver, modules: $(tr '\n' ' ' < "$stage/lib/modules/load-order"))"
