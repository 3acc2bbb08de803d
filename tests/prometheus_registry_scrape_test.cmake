# Needs prometheus-cpp (target sturdy::prometheus). One case waits up to
# 100 ms of real time for another thread: label slow.
if(TARGET sturdy::prometheus)
  target_link_libraries(${name} PRIVATE sturdy::prometheus)
else()
  target_compile_definitions(${name} PRIVATE STURDY_NO_PROMETHEUS=1)
endif()
# (One label: gtest_discover_tests takes a single LABELS value.)
set(labels slow)
