#!/bin/sh
# install_without_hiredis.sh SOURCE_DIR BUILD_DIR PREFIX CXX NO_HIREDIS_PC_DIR
# Configures sturdy (package only) as on a machine without hiredis (pkg-config
# sees every .pc file but hiredis.pc) and installs it into PREFIX. Checks that
# the configure said so, and that the core package (CMake config and
# sturdy.pc) never mentions hiredis; only the redis component's own files do.
set -eu
src=$1 build=$2 prefix=$3 cxx=$4 pcdir=$5
rm -rf "$build" "$prefix"
export PKG_CONFIG_LIBDIR="$pcdir"
cmake -S "$src" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DSTURDY_BUILD_TESTS=OFF -DSTURDY_BUILD_BENCH=OFF \
  -DSTURDY_BUILD_EXAMPLES=OFF -DSTURDY_INSTALL=ON > "$build.log" 2>&1 || { cat "$build.log"; exit 1; }
grep -q 'component redis not built here: needs hiredis' "$build.log" || {
  cat "$build.log"; echo "the configure did not report the redis component as unavailable"; exit 1; }
cmake --install "$build" --prefix "$prefix" >> "$build.log"
for f in "$prefix"/share/cmake/sturdy/sturdy*.cmake "$prefix/share/pkgconfig/sturdy.pc"; do
  if grep -i -n 'hiredis' "$f"; then echo "$f mentions hiredis"; exit 1; fi
done
[ -f "$prefix/share/cmake/sturdy/components/redis.cmake" ] || { echo "the redis recipe was not installed"; exit 1; }
echo "installed without hiredis ok"
