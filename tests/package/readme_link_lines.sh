#!/bin/sh
# readme_link_lines.sh README MAIN_CPP PREFIX WORKDIR
# Runs, exactly as written, the `g++ -std=c++20 main.cpp ...` lines of the
# README's "Using sturdy" section on MAIN_CPP (a program using every
# primitive), with sturdy installed in PREFIX standing in for /usr/local
# (PKG_CONFIG_PATH and CPLUS_INCLUDE_PATH point there), and runs each program.
set -eu
readme=$1 main=$2 prefix=$3 work=$4
lines=$(awk '/^## Using sturdy/ { on = 1; next } /^## / { on = 0 } on && /^g\+\+ -std=c\+\+20 main\.cpp / { print }' "$readme")
count=$(printf '%s\n' "$lines" | grep -c . || true)
printf '%s\n' "$lines" | grep -q 'pkg-config --cflags --libs sturdy' || { echo "no pkg-config line in the README"; exit 1; }
printf '%s\n' "$lines" | grep -v -q 'pkg-config' || { echo "no plain g++ line in the README"; exit 1; }
rm -rf "$work"
n=0
printf '%s\n' "$lines" | while IFS= read -r line; do
  n=$((n + 1))
  mkdir -p "$work/$n"
  cp "$main" "$work/$n/main.cpp"
  echo "README line $n: $line"
  (cd "$work/$n" && PKG_CONFIG_PATH="$prefix/share/pkgconfig" CPLUS_INCLUDE_PATH="$prefix/include" sh -c "$line")
  "$work/$n/main"
done
echo "README link lines ok ($count lines)"
