# absl::Cleanup is the scope-guard baseline; header-only, but linked through
# its target when the installed Abseil provides one.
if(TARGET absl::cleanup)
  target_link_libraries(${name} PRIVATE absl::cleanup)
  target_compile_definitions(${name} PRIVATE STURDY_BENCH_HAVE_ABSL_CLEANUP=1)
endif()
# The counting global allocator (its own translation unit, as in the tests),
# so the benchmark reports allocs/iter next to each timing.
target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support/counting_new.cpp)
