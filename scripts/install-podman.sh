#!/usr/bin/env bash
# What the container test needs: podman (with runc, which works where crun meets hybrid
# cgroups) and debootstrap (a base image from Debian's packages when no registry answers).
set -euo pipefail
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-podman: missing ${missing[*]} and cannot install them here" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
