#!/usr/bin/env bash
# Unpack Debian's syslog-ng with its Kafka module (kafka-c) privately into .stack/syslog-ng/, for the shipper
# tests. Never apt-installed: syslog-ng-core conflicts with rsyslog, and installing it would start a system
# daemon. Idempotent: a second run only checks that it starts. Prints the path of .stack/syslog-ng/syslog-ng, a
# wrapper that runs the unpacked binary with its own libraries (plus those the machine lacks) and module path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEST="$STACK/syslog-ng"
WRAPPER="$DEST/syslog-ng"
PACKAGES=(syslog-ng-core syslog-ng-mod-rdkafka)

works() {
  [[ -x "$WRAPPER" ]] && "$WRAPPER" --version 2>/dev/null | grep -q '^Available-Modules:.*kafka'
}

write_wrapper() {
  local arch moddir
  arch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
  moddir="$(dirname "$(ls "$DEST"/usr/lib/syslog-ng/*/libkafka.so 2>/dev/null | head -n1)")"
  [[ -d "$moddir" && "$moddir" != . ]] || die "no kafka module (libkafka.so) under $DEST/usr/lib/syslog-ng"
  # The binary's RUNPATH is /usr/lib/syslog-ng; point it, and the module path, at the private tree.
  {
    echo '#!/bin/sh'
    echo "export LD_LIBRARY_PATH=\"$DEST/usr/lib/syslog-ng:$DEST/usr/lib/$arch:$DEST/lib/$arch\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "exec \"$DEST/usr/sbin/syslog-ng\" --module-path=\"$moddir\" \"\$@\""
  } >"$WRAPPER"
  chmod +x "$WRAPPER"
}

if works; then
  echo "$WRAPPER"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "syslog-ng.sh needs apt-get (Debian) to download syslog-ng"
mkdir -p "$DEST" "$STACK/syslog-ng-debs"
cd "$STACK/syslog-ng-debs"

# Libraries the two packages depend on that are not installed system-wide are unpacked next to syslog-ng.
wanted=("${PACKAGES[@]}")
while read -r dep; do
  [[ -z "$dep" || " ${PACKAGES[*]} " == *" $dep "* ]] && continue
  status="$(dpkg-query -W -f='${Status}' "$dep" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || wanted+=("$dep")
done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
           --no-enhances "${PACKAGES[@]}" 2>/dev/null |
         awk '$1 == "Depends:" && $2 !~ /^</ { print $2 }' | sort -u | grep -vE '^(lsb-base|sysvinit-utils)$')

log "syslog-ng.sh: downloading ${wanted[*]}"
if ! apt-get download -q "${wanted[@]}" >download.log 2>&1; then
  # A fresh machine may have no package lists yet.
  apt-get update -q >/dev/null 2>&1 || true
  apt-get download -q "${wanted[@]}" >download.log 2>&1 || { tail -n 5 download.log >&2; die "apt-get download failed"; }
fi
for deb in ./*.deb; do
  dpkg -x "$deb" "$DEST"
done

write_wrapper
works || die "syslog-ng unpacked into $DEST does not start with its kafka module: $("$WRAPPER" --version 2>&1 | tail -n 3)"
echo "$WRAPPER"
