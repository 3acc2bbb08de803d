# sturdy component `prometheus`: the Prometheus exporter (sturdy/prometheus/*.hpp).
# Needs prometheus-cpp's core and pull libraries (Debian: prometheus-cpp-dev),
# found as a CMake package. The contract every recipe follows is written down
# in CMakeLists.txt, "Optional components".
set(sturdy_prometheus_summary "the Prometheus exporter (sturdy/prometheus/*.hpp)")
set(sturdy_prometheus_pc_requires prometheus-cpp-core prometheus-cpp-pull)

# GLOBAL (CMake >= 3.24) in sturdy's own tree, so an add_subdirectory consumer
# sees prometheus-cpp's targets too.
set(_sturdy_prometheus_global "")
if(STURDY_COMPONENT_SCOPE AND CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
  set(_sturdy_prometheus_global GLOBAL)
endif()
find_package(prometheus-cpp CONFIG QUIET ${_sturdy_prometheus_global})
unset(_sturdy_prometheus_global)
if(prometheus-cpp_FOUND AND TARGET prometheus-cpp::core AND TARGET prometheus-cpp::pull)
  sturdy_add_component(prometheus prometheus-cpp::core prometheus-cpp::pull)
else()
  sturdy_component_missing(prometheus "prometheus-cpp with its pull library (Debian: prometheus-cpp-dev)")
endif()
