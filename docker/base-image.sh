#!/usr/bin/env bash
# Makes the `debian:bookworm-slim` base image locally, for machines that
# cannot pull from a registry. Where pulling works this is not needed: the
# Dockerfile names the ordinary upstream tag, and the image built here stands
# in for it under the same name.
#
# Usage: docker/base-image.sh [--force]
set -euo pipefail

IMAGE=debian:bookworm-slim

if [[ "${1:-}" != "--force" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base-image: $IMAGE already present"
    exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "base-image: installing mmdebstrap"
    apt-get update -qq
    apt-get install -y -qq mmdebstrap >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# minbase is Debian's smallest bootable userland (what the slim image holds);
# ca-certificates so TLS to outside services works from the container.
echo "base-image: mmdebstrap bookworm (minbase)"
mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$work/rootfs.tar"
docker import "$work/rootfs.tar" "$IMAGE" >/dev/null
echo "base-image: imported $IMAGE"
