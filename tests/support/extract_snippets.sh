#!/bin/sh
# extract_snippets.sh [options] PAGE.md PRELUDE OUT.cpp
#
# Turns the C++ code blocks of one Markdown page (README.md or a docs/ page)
# into one translation unit, so a test compiles every snippet a reader sees.
# tests/CMakeLists.txt runs it for README.md (linked and run: readme_snippets)
# and for every docs/*.md (compiled: doc_snippets.<page>).
#
# What a page author writes (the fence's first word stays `cpp`, so every
# Markdown viewer still highlights it):
#
#   ```cpp            compiled at namespace scope: declarations, functions,
#                     classes. Each block gets its own namespace, so two
#                     blocks may both declare `breaker`.
#   ```cpp body       compiled as the body of a function: statements, e.g. a
#                     test's lines (gtest's EXPECT_*/ASSERT_* work). The
#                     function returns void, or sturdy::result<void> when the
#                     block uses BOOST_OUTCOME_TRY (then no bare `return;`).
#   ```cpp global     compiled at global scope (no namespace of its own), for
#                     what must live there, e.g. an explicit specialization of
#                     a sturdy template; emitted before the other blocks (a
#                     specialization must precede its uses).
#   ```cpp fragment   NOT compiled: only for a deliberate fragment (a field
#                     inside an initializer, pseudo-code with `...`, a
#                     concept written as prose). Use sparingly.
#
#   <!-- cpp setup
#   struct Stock { int count = 0; };          // not shown on the page;
#   extern sturdy::dead_letter_queue dlq;     // compiled before every block
#   -->
#
# Setup sections declare what the page's snippets assume (the reader's own
# types and objects); they may appear anywhere on the page, are emitted in
# order before the first block, and are only compiled, never linked, on docs
# pages, so `extern` declarations without definitions are enough.
# `#include` lines of blocks and setups are moved to the top of the file.
# Errors point at the page's own lines (#line). Unused variables are not
# warned about in snippets (a snippet often ends on a result for the reader).
#
# Other fences starting with a C++-ish word (c++, cc, cxx, hpp, cpp-xyz, cpp
# with another word) are refused, so a block cannot silently escape the test.
#
# Options:
#   --main TEXT       add `int main()` printing TEXT (README: linked and run)
#   --require-include every compiled block must #include a sturdy header
#   --skip DIR        blocks that include "DIR..." (e.g. sturdy/redis/) become
#                     comments: the component is not available in this build
set -e
main="" require_include=0 skip=""
while [ $# -gt 3 ]; do
  case $1 in
    --main) main=$2; shift 2 ;;
    --require-include) require_include=1; shift ;;
    --skip) skip="$skip $2"; shift 2 ;;
    *) echo "extract_snippets.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
page=$1 prelude=$2 out=$3
ns=$(basename "$page" .md | tr -c 'A-Za-z0-9\n' '_')

awk -v page="$page" -v ns="$ns" -v require_include="$require_include" -v skip="$skip" '
function fail(msg) { fail_at(NR, msg) }
function fail_at(line, msg) { printf "%s:%d: %s\n", page, line, msg > "/dev/stderr"; failed = 1; exit 1 }
function is_include(line) { return line ~ /^[ \t]*#[ \t]*include[ \t]*[<"]/ }
function flush_block(   i, skipped, d, n, dirs, has_sturdy, tries) {
  skipped = ""
  has_sturdy = 0
  tries = 0
  for (i = 1; i <= nlines; i++) {
    if (index(text[i], "BOOST_OUTCOME_TRY") > 0) tries = 1
    if (is_include(text[i]) && text[i] ~ /"sturdy\//) has_sturdy = 1
    n = split(skip, dirs, " ")
    for (d = 1; d <= n; d++)
      if (is_include(text[i]) && index(text[i], "\"" dirs[d]) > 0) skipped = dirs[d]
  }
  if (require_include && !has_sturdy)
    fail_at(start, "this ```cpp block names no sturdy header: add its #include \"sturdy/...\" line")
  nblock++
  if (skipped != "") {
    body = body "\n// block " nblock " (" page ":" start ") skipped: " skipped " is not available in this build\n"
    return
  }
  for (i = 1; i <= nlines; i++)
    if (is_include(text[i])) { includes = includes text[i] "\n"; text[i] = "" }
  if (kind == "global") {
    globals = globals "\n// block " nblock "\n#line " (start + 1) " \"" page "\"\n"
    for (i = 1; i <= nlines; i++) globals = globals text[i] "\n"
    return
  }
  body = body "\nnamespace " ns "_" nblock " {\n"
  if (kind == "body" && tries) body = body "[[maybe_unused]] inline sturdy::result<void> snippet_body() {\n"
  else if (kind == "body") body = body "[[maybe_unused]] inline void snippet_body() {\n"
  body = body "#line " (start + 1) " \"" page "\"\n"
  for (i = 1; i <= nlines; i++) body = body text[i] "\n"
  if (kind == "body" && tries) body = body "return sturdy::success();\n}\n"
  else if (kind == "body") body = body "}\n"
  body = body "}  // namespace " ns "_" nblock "\n"
}
BEGIN { state = "text"; nblock = 0; body = ""; includes = ""; setup = ""; globals = "" }
state == "setup" {
  if ($0 == "-->") { state = "text"; next }
  if (is_include($0)) includes = includes $0 "\n"
  else setup = setup $0 "\n"
  next
}
state == "code" {
  if ($0 ~ /^[ \t]*```/) { if (kind != "fragment") flush_block(); state = "text"; next }
  text[++nlines] = $0
  next
}
state == "other" {
  if ($0 ~ /^[ \t]*```[ \t]*$/) state = "text"
  next
}
state == "text" && /^<!-- cpp setup/ { state = "setup"; setup = setup "#line " (NR + 1) " \"" page "\"\n"; next }
state == "text" && /^[ \t]*```/ {
  info = $0
  sub(/^[ \t]*```[ \t]*/, "", info)
  sub(/[ \t]+$/, "", info)
  if (info == "cpp") kind = "namespace"
  else if (info == "cpp body") kind = "body"
  else if (info == "cpp global") kind = "global"
  else if (info == "cpp fragment") kind = "fragment"
  else if (info ~ /^([cC]\+\+|cc|cxx|hpp|hxx|h|cpp)([^A-Za-z0-9]|$)/)
    fail("unknown code fence \"```" info "\": use ```cpp, ```cpp body, ```cpp global or ```cpp fragment (see tests/support/extract_snippets.sh)")
  else { state = "other"; next }
  state = "code"; nlines = 0; start = NR
  next
}
END {
  if (failed) exit 1
  if (state == "code") fail_at(start, "this ```cpp block is never closed")
  if (state == "setup") fail("a <!-- cpp setup section is never closed by a line -->")
  print "// Generated from " page " by tests/support/extract_snippets.sh. Edit the page, not this file."
  print "// The includes the snippets name:"
  printf "%s", includes
  print "// The shared prelude:"
  print "#include \"" PRELUDE "\""
  print "// The page setup (<!-- cpp setup ... -->):"
  printf "%s", setup
  print "// A snippet may end on a result the reader would go on to use:"
  print "#pragma GCC diagnostic ignored \"-Wunused-variable\""
  print "#pragma GCC diagnostic ignored \"-Wunused-but-set-variable\""
  print "// The ```cpp global blocks:"
  printf "%s", globals
  printf "%s", body
  print "#line 1 \"" page " (end)\""
}
' PRELUDE="$prelude" "$page" > "$out.tmp" || { rm -f "$out.tmp"; exit 1; }
if [ -n "$main" ]; then
  printf 'int main() { std::puts("%s"); }\n' "$main" >> "$out.tmp"
fi
mv "$out.tmp" "$out"
