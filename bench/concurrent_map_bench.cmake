# The comparison maps for concurrent_map_bench (benchmark dependencies only,
# never of the library): oneTBB's concurrent_hash_map (Debian libtbb-dev) and
# libcuckoo (Debian libcuckoo-dev, header-only). Either missing: the bench
# still builds and compares against the remaining baselines.
find_package(TBB CONFIG QUIET)
if(TARGET TBB::tbb)
  target_link_libraries(${name} PRIVATE TBB::tbb)
  target_compile_definitions(${name} PRIVATE STURDY_BENCH_HAVE_TBB=1)
endif()
find_package(libcuckoo CONFIG QUIET)
if(TARGET libcuckoo::libcuckoo)
  target_link_libraries(${name} PRIVATE libcuckoo::libcuckoo)
  target_compile_definitions(${name} PRIVATE STURDY_BENCH_HAVE_LIBCUCKOO=1)
else()
  find_path(STURDY_LIBCUCKOO_INCLUDE_DIR libcuckoo/cuckoohash_map.hh)
  if(STURDY_LIBCUCKOO_INCLUDE_DIR)
    target_include_directories(${name} SYSTEM PRIVATE ${STURDY_LIBCUCKOO_INCLUDE_DIR})
    target_compile_definitions(${name} PRIVATE STURDY_BENCH_HAVE_LIBCUCKOO=1)
  endif()
endif()
