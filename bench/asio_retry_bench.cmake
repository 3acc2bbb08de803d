if(TARGET sturdy::asio)
  target_link_libraries(${name} PRIVATE sturdy::asio)
else()
  set_target_properties(${name} PROPERTIES EXCLUDE_FROM_ALL TRUE)
endif()
# The counting global allocator, so the benchmark reports allocs/iter.
target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support/counting_new.cpp)
target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
