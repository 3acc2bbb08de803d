#!/bin/sh
# extract_readme.sh README PRELUDE OUT: writes OUT = PRELUDE + every ```cpp
# block of README in its own namespace + a main that says it compiled.
set -e
readme=$1 prelude=$2 out=$3
{
  cat "$prelude"
  awk '/^```cpp$/ { on = 1; n++; print "namespace snippet_" n " {"; next }
       /^```/     { if (on) print "}  // namespace snippet_" n; on = 0; next }
       on         { print }' "$readme"
  echo 'int main() { std::puts("README snippets compiled"); }'
} > "$out.tmp"
mv "$out.tmp" "$out"
