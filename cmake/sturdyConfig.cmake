# sturdy's CMake package: find_package(sturdy [<version>] [CONFIG]
#                                       [COMPONENTS redis ...] [OPTIONAL_COMPONENTS ...])
#
# The core, sturdy::sturdy, needs Boost >= 1.81 (Outcome), Abseil and
# Threads. Each optional part is a component with its own target
# sturdy::<component> and its own dependencies, looked up here only when the
# component is asked for: a core-only consumer never looks for them.
# Components: one recipe per file under components/ (see redis.cmake).
include(CMakeFindDependencyMacro)
find_dependency(Boost 1.81 CONFIG)
find_dependency(absl CONFIG)
find_dependency(Threads)
include("${CMAKE_CURRENT_LIST_DIR}/sturdyTargets.cmake")

# What the recipes call (sturdy's own CMakeLists.txt defines its own pair).
set(STURDY_COMPONENT_SCOPE "")
function(sturdy_add_component name)
  if(NOT TARGET sturdy::${name})
    add_library(sturdy::${name} INTERFACE IMPORTED)
    set_target_properties(sturdy::${name} PROPERTIES INTERFACE_LINK_LIBRARIES "sturdy::sturdy;${ARGN}")
  endif()
  set(sturdy_${name}_FOUND TRUE PARENT_SCOPE)
endfunction()
function(sturdy_component_missing name what)
  set(sturdy_${name}_FOUND FALSE PARENT_SCOPE)
  set(sturdy_${name}_NOT_FOUND_MESSAGE
      "sturdy's component '${name}' needs ${what}, which was not found" PARENT_SCOPE)
endfunction()

file(GLOB _sturdy_known RELATIVE "${CMAKE_CURRENT_LIST_DIR}/components"
     "${CMAKE_CURRENT_LIST_DIR}/components/*.cmake")
string(REPLACE ".cmake" "" _sturdy_known "${_sturdy_known}")
set(_sturdy_missing "")
foreach(_sturdy_comp IN LISTS sturdy_FIND_COMPONENTS)
  if(_sturdy_comp IN_LIST _sturdy_known)
    include("${CMAKE_CURRENT_LIST_DIR}/components/${_sturdy_comp}.cmake")
  else()
    set(sturdy_${_sturdy_comp}_FOUND FALSE)
    string(REPLACE ";" ", " _sturdy_list "${_sturdy_known}")
    set(sturdy_${_sturdy_comp}_NOT_FOUND_MESSAGE
        "sturdy has no component '${_sturdy_comp}' (known: ${_sturdy_list})")
  endif()
  if(NOT sturdy_${_sturdy_comp}_FOUND AND sturdy_FIND_REQUIRED_${_sturdy_comp})
    string(APPEND _sturdy_missing " ${sturdy_${_sturdy_comp}_NOT_FOUND_MESSAGE}.")
  endif()
endforeach()
if(_sturdy_missing)
  set(sturdy_FOUND FALSE)
  set(sturdy_NOT_FOUND_MESSAGE "${_sturdy_missing}")
endif()
unset(_sturdy_known)
unset(_sturdy_missing)
unset(_sturdy_comp)
unset(_sturdy_list)
