#!/usr/bin/env bash
# Builds SentencePiece 0.1.97 from Debian's source package as static libraries
# linked against the system protobuf (3.21), and installs them into a prefix
# that CMake finds (data/sentencepiece/CMakeLists.txt).
#
# Why not Debian's libsentencepiece.so: it embeds protobuf-lite 3.14, which
# aborts (version check) or segfaults in a process that also links Debian's
# libprotobuf 3.21. Our static build has no protobuf of its own; the
# `switchboard` binary links libprotobuf 3.21 once. Only data/tokenizer.cc
# includes the SentencePiece headers (they clash with Abseil's string_view).
#
# Idempotent: exits at once when the prefix already holds this version.
# Takes ~40 seconds on 2 cores. Needs root (or sudo) only to add a deb-src
# line and install build tools when they are missing.
#
# Usage: bash data/sentencepiece/build_sentencepiece.sh [PREFIX]
#   PREFIX defaults to $SB_SENTENCEPIECE_PREFIX, else /opt/switchboard/sentencepiece.
set -euo pipefail

VERSION=0.1.97
PREFIX="${1:-${SB_SENTENCEPIECE_PREFIX:-/opt/switchboard/sentencepiece}}"
STAMP="$PREFIX/.switchboard-sentencepiece-$VERSION"
JOBS="${SB_BUILD_JOBS:-2}"

if [ -f "$STAMP" ] && [ -f "$PREFIX/lib/libsentencepiece.a" ] \
   && [ -f "$PREFIX/lib/libsentencepiece_train.a" ] \
   && [ -f "$PREFIX/include/sentencepiece_processor.h" ]; then
  echo "[sentencepiece] $VERSION present in $PREFIX"
  exit 0
fi

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# Build tools and the system protobuf the library is compiled against.
need=()
for p in dpkg-dev cmake ninja-build g++ protobuf-compiler libprotobuf-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done

# apt-get source needs a deb-src entry; add Debian's own when none is configured.
have_src=no
if grep -rqsE '^[[:space:]]*deb-src[[:space:]]|^Types:.*deb-src' \
     /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
  have_src=yes
fi
updated=no
if [ "$have_src" = no ]; then
  echo "[sentencepiece] adding a deb-src entry for bookworm main"
  printf '%s\n' "Types: deb-src" "URIs: http://deb.debian.org/debian" "Suites: bookworm" \
    "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" |
    $SUDO tee /etc/apt/sources.list.d/switchboard-deb-src.sources >/dev/null
  $SUDO apt-get update -qq
  updated=yes
fi
if [ ${#need[@]} -gt 0 ]; then
  [ "$updated" = yes ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sb-sentencepiece.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "[sentencepiece] fetching Debian source package sentencepiece=$VERSION"
# Debian's version is 0.1.97-3; the upstream tarball plus Debian's patches.
fetch_source() {
  apt-get source -qq "sentencepiece=${VERSION}-3" >/dev/null 2>&1 \
    || apt-get source -qq sentencepiece >/dev/null 2>&1
}
if ! fetch_source; then
  # Source lists may be missing or stale (deb-src configured, never updated).
  $SUDO apt-get update -qq
  fetch_source || { apt-get source sentencepiece >&2; exit 1; }
fi
SRC="$(find "$WORK" -maxdepth 1 -type d -name "sentencepiece-*" | head -n1)"
[ -n "$SRC" ] || { echo "[sentencepiece] apt-get source produced no source tree" >&2; exit 1; }
grep -q "$VERSION" "$SRC/VERSION.txt" 2>/dev/null \
  || echo "[sentencepiece] note: source tree is $(cat "$SRC/VERSION.txt" 2>/dev/null), expected $VERSION"
# Debian's patch series removes the static library targets; undo that one patch.
if [ -f "$SRC/debian/patches/disable-static-library.patch" ]; then
  patch -d "$SRC" -R -p1 -s < "$SRC/debian/patches/disable-static-library.patch"
fi
# Debian's ShutdownLibrary patch includes the bundled protobuf-lite header by
# path, which clashes with the system protobuf we build against.
sed -i 's|"third_party/protobuf-lite/google/protobuf/message_lite.h"|<google/protobuf/message_lite.h>|' \
  "$SRC/src/init.h"

echo "[sentencepiece] building static libraries (-j$JOBS) into $PREFIX"
cmake -S "$SRC" -B "$WORK/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DCMAKE_INSTALL_LIBDIR=lib \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DSPM_ENABLE_SHARED=OFF \
  -DSPM_USE_BUILTIN_PROTOBUF=OFF \
  -DSPM_ENABLE_TCMALLOC=OFF \
  -DSPM_BUILD_TEST=OFF >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; exit 1; }
ninja -C "$WORK/build" -j"$JOBS" sentencepiece-static sentencepiece_train-static \
  >>"$WORK/build.log" 2>&1 || { grep -v '^\[' "$WORK/build.log" | tail -n 40 >&2; exit 1; }

# Install only what we link: the two archives and the two public headers
# (the spm_* tools come from Debian's `sentencepiece` package).
AS=""  # sudo only when the prefix is not ours to write (e.g. /opt as a user)
{ mkdir -p "$PREFIX" 2>/dev/null && [ -w "$PREFIX" ]; } || AS="$SUDO"
$AS mkdir -p "$PREFIX/lib" "$PREFIX/include"
$AS cp "$WORK/build/src/libsentencepiece.a" "$WORK/build/src/libsentencepiece_train.a" "$PREFIX/lib/"
$AS cp "$SRC/src/sentencepiece_processor.h" "$SRC/src/sentencepiece_trainer.h" "$PREFIX/include/"
echo "$VERSION built $(date -u +%FT%TZ) against protobuf $(protoc --version)" | $AS tee "$STAMP" >/dev/null
echo "[sentencepiece] $VERSION installed in $PREFIX"
