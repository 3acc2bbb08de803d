# Build the std::expected test as C++23 with g++ (libstdc++ 12 enables
# <expected> only there); clang 14 lacks the concepts level it requires.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  set_target_properties(${name} PROPERTIES CXX_STANDARD 23 CXX_STANDARD_REQUIRED ON)
endif()
