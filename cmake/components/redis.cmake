# sturdy component `redis`: the Redis idempotency store (sturdy/redis/*.hpp).
# Needs hiredis (Debian: libhiredis-dev), looked up with pkg-config.
#
# One recipe, two users: sturdy's own CMakeLists.txt (to define sturdy::redis
# in its tree) and the installed sturdyConfig.cmake (only when a consumer asks
# for the component, so core-only consumers never look for hiredis). The
# contract every recipe follows is written down in CMakeLists.txt, "Optional
# components".
set(sturdy_redis_summary "the Redis idempotency store (sturdy/redis/*.hpp)")
set(sturdy_redis_pc_requires hiredis)

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(STURDY_HIREDIS QUIET IMPORTED_TARGET ${STURDY_COMPONENT_SCOPE} hiredis)
endif()
if(STURDY_HIREDIS_FOUND)
  sturdy_add_component(redis PkgConfig::STURDY_HIREDIS)
else()
  sturdy_component_missing(redis "hiredis (Debian: libhiredis-dev), looked up with pkg-config")
endif()
