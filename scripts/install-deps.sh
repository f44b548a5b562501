#!/usr/bin/env bash
# Installs the Debian 12 packages revd needs, and only those that are missing.
#   scripts/install-deps.sh          what building and running revd needs
#   scripts/install-deps.sh --test   plus what the test suite needs (clients, clang, servers)
#   scripts/install-deps.sh --bench  plus the benchmark tools (wrk, nginx)
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config openssl libssl-dev libuv1-dev node-llhttp
            libinih-dev libcmocka-dev libpq-dev libhiredis-dev libsystemd-dev libjansson-dev)
test_pkgs=(python3 curl gnutls-bin faketime clang libclang-rt-14-dev postgresql redis-server
           nginx-light man-db)
bench_pkgs=(wrk nginx-light valgrind)

want=("${build_pkgs[@]}")
for arg in "$@"; do
	case "$arg" in
	--test) want+=("${test_pkgs[@]}") ;;
	--bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
	*) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
	esac
done

missing=()
for p in "${want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	sudo=()
elif command -v sudo >/dev/null; then
	sudo=(sudo)
else
	echo "install-deps: missing packages (${missing[*]}) and not root; install them and retry" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
