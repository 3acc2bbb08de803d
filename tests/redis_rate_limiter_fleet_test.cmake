# The Redis rate limiter's fleet tests need hiredis (target sturdy::redis);
# without it the test compiles to one skipped case. They run for seconds of
# real time (two processes, a Redis killed and restarted): label slow.
if(TARGET sturdy::redis)
  target_link_libraries(${name} PRIVATE sturdy::redis)
else()
  target_compile_definitions(${name} PRIVATE STURDY_NO_HIREDIS=1)
endif()
# (One label: gtest_discover_tests takes a single LABELS value.)
set(labels slow)
