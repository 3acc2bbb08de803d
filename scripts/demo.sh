#!/usr/bin/env bash
# Installs what is missing, builds sturdy's main demo and runs it.
# Extra arguments go to the demo (e.g. --seed 7 --users 20 --json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/deps.sh
DIR=build/demo
mkdir -p build
cmake -S . -B "$DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTURDY_BUILD_TESTS=OFF \
  -DSTURDY_BUILD_BENCH=OFF -DSTURDY_BUILD_EXAMPLES=ON >"$DIR.configure.log" 2>&1 \
  || { cat "$DIR.configure.log"; exit 1; }
DEMO=${STURDY_DEMO:-example_onboarding}
cmake --build "$DIR" -j "$(nproc)" --target "$DEMO" >"$DIR.build.log" 2>&1 \
  || { tail -50 "$DIR.build.log"; exit 1; }
BIN=$(find "$DIR/examples" -type f -name "$DEMO" -perm -u+x | head -1)
exec "$BIN" "$@"
