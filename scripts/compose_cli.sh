#!/usr/bin/env bash
# Makes `docker compose` (Compose v2, the CLI plugin) available for validating docker/compose.yaml.
# No container engine is needed for `docker compose config`. Debian 12 ships only Compose 1.x, so
# the v2 plugin is taken from Debian 13's package (a static Go binary; needs glibc >= 2.34), pinned
# by SHA-256 and cached in EMBEDQ_HOME. Without a docker CLI the plugin also runs on its own.
set -euo pipefail
EMBEDQ_HOME=${EMBEDQ_HOME:-$HOME/.cache/embedq}
DEB=docker-compose_2.26.1-4_amd64.deb
SHA256=47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea
URL=http://deb.debian.org/debian/pool/main/d/docker-compose/$DEB
PLUGIN_DIR=$HOME/.docker/cli-plugins

if docker compose version 2>/dev/null | grep -q 'version v\?2'; then
  exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
  echo "compose_cli: no pinned Compose v2 build for $(uname -m); install docker-compose-plugin" >&2
  exit 1
fi
mkdir -p "$EMBEDQ_HOME/downloads" "$PLUGIN_DIR"
cache=$EMBEDQ_HOME/downloads/$DEB
if [ ! -f "$cache" ] || ! echo "$SHA256  $cache" | sha256sum -c --status; then
  echo "compose_cli: downloading $URL"
  curl -fsSL --retry 3 -o "$cache.part" "$URL"
  echo "$SHA256  $cache.part" | sha256sum -c --status || { echo "compose_cli: SHA-256 mismatch for $DEB" >&2; exit 1; }
  mv "$cache.part" "$cache"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$cache" "$tmp"
install -m 0755 "$tmp/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/docker-compose"
echo "compose_cli: installed $("$PLUGIN_DIR/docker-compose" version)"
