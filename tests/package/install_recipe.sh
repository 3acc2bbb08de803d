#!/bin/sh
# install_recipe.sh SOURCE_DIR README WORKDIR
# Runs the README's copy-paste install line (the one starting
# `cmake -S . -B build/package`) as written, in a stand-in clone of SOURCE_DIR
# (symbolic links to its top-level entries), installing under DESTDIR. Checks
# that it installed the package and built nothing else: no test, benchmark or
# example dependency was even looked for, and there is nothing to compile.
set -eu
src=$1 readme=$2 work=$3
line=$(grep -E '^cmake -S \. -B build/package ' "$readme" || true)
[ -n "$line" ] || { echo "no install line (cmake -S . -B build/package ...) in the README"; exit 1; }
rm -rf "$work"
mkdir -p "$work/clone"
for entry in "$src"/* "$src"/.[!.]*; do
  [ -e "$entry" ] || continue
  case $(basename "$entry") in build|.git) continue ;; esac
  ln -s "$entry" "$work/clone/"
done
echo "README install line: $line"
(cd "$work/clone" && DESTDIR="$work/root" sh -c "$line") > "$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
root=$work/root/usr/local
for f in include/sturdy/sturdy.hpp include/sturdy/redis/idempotency_store.hpp \
         share/cmake/sturdy/sturdyConfig.cmake share/cmake/sturdy/sturdyConfigVersion.cmake \
         share/cmake/sturdy/sturdyTargets.cmake share/cmake/sturdy/components/redis.cmake \
         share/cmake/sturdy/components/prometheus.cmake share/pkgconfig/sturdy.pc \
         share/pkgconfig/sturdy-redis.pc share/pkgconfig/sturdy-prometheus.pc; do
  [ -f "$root/$f" ] || { echo "not installed: $f"; cat "$work/install.log"; exit 1; }
done
cache=$work/clone/build/package/CMakeCache.txt
for dep in GTest_DIR benchmark_DIR SQLite3_INCLUDE_DIR; do
  if grep -q "^$dep:" "$cache"; then echo "the package-only configure looked for $dep"; exit 1; fi
done
(cd "$work/clone" && cmake --build build/package) > "$work/build.log" 2>&1
if grep -q 'Building CXX' "$work/build.log"; then echo "the package-only build compiled something:"; cat "$work/build.log"; exit 1; fi
echo "install recipe ok"
