#!/usr/bin/env bash
# A Debian bookworm + Python 3.11 base image built from Debian's packages alone, for machines
# that reach no container registry (python:3.11-slim-bookworm is the same thing, pulled).
#   deploy/container/base-image.sh [TAG]     # default localhost/spillover-base:bookworm-py311
set -euo pipefail
TAG=${1:-localhost/spillover-base:bookworm-py311}
ENGINE=${ENGINE:-podman}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if $ENGINE image exists "$TAG" 2>/dev/null; then
  echo "base-image: $TAG exists"; exit 0
fi
ROOTFS=$(mktemp -d /tmp/spillover-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$ROOTFS" "$MIRROR" >/dev/null
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc "$ROOTFS"/usr/share/man
tar -C "$ROOTFS" -c . | $ENGINE import --change 'CMD ["python3"]' - "$TAG" >/dev/null
echo "base-image: built $TAG"
