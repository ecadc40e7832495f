#!/usr/bin/env bash
# Builds libswiftshm.so (Swift runtime linked statically: it needs no Swift
# toolchain where it runs) and installs it with swiftshm.h and swiftshm.pc.
#
#   c/install.sh [PREFIX]        (default /usr/local; needs Swift 6.3 to build)
#   cc app.c $(pkg-config --cflags --libs swiftshm)
#
# With PREFIX=DIR, DIR/lib/pkgconfig goes into PKG_CONFIG_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
swift build -c release --product swiftshm -Xswiftc -static-stdlib >&2
bin=$(swift build -c release --product swiftshm -Xswiftc -static-stdlib --show-bin-path)
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$bin/libswiftshm.so" "$prefix/lib/libswiftshm.so"
install -m 0644 Sources/CSwiftShm/include/swiftshm.h "$prefix/include/swiftshm.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$prefix/lib|" -e "s|@INCLUDEDIR@|$prefix/include|" \
  c/swiftshm.pc.in > "$prefix/lib/pkgconfig/swiftshm.pc"
echo "installed libswiftshm.so, swiftshm.h and swiftshm.pc under $prefix" >&2
