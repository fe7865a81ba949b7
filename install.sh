#!/usr/bin/env bash
# Installs everything clawpatrol needs on a Debian bookworm machine, then
# builds it. Idempotent: re-running only does what is missing.
#
#   ./install.sh            runtime + test dependencies, npm ci, build
#   ./install.sh --bench    also the benchmark baselines and load tools (pgbouncer, mitmproxy, wrk, nginx)
set -euo pipefail
cd "$(dirname "$0")"

want_bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# Runtime: WireGuard (userspace), nftables for TPROXY, iproute2 for namespaces.
# Tests: a real PostgreSQL 15 and its clients, curl.
packages=(
  ca-certificates curl openssl util-linux iproute2 nftables wireguard-go wireguard-tools
  postgresql-15 postgresql-client-15 python3 make g++
)
if [ "$want_bench" = 1 ]; then
  # nginx is the HTTPS benchmark's upstream (bench/http/wrk.ts runs its own instance).
  packages+=(pgbouncer mitmproxy wrk nginx)
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "install.sh: need root (or sudo) to install: ${packages[*]}" >&2; exit 1
  fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install.sh: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # --no-install-recommends: otherwise apt pulls systemd and a kernel image.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts a freshly installed nginx as a system service on port 80;
  # the benchmark needs only the binary.
  if [[ " ${missing[*]} " == *" nginx "* ]] && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now nginx.service >/dev/null 2>&1 || true
  fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "install.sh: Node.js >= 20.19 is required (found $(node -v))" >&2
  exit 1
fi

# npm 11 blocks dependency install scripts unless package.json allows them
# (allowScripts); better-sqlite3 and sockopt are native addons built here.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
echo "install.sh: done. Try: node dist/cli/main.js --help"
