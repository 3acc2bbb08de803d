# The Redis rate limiter's tests need hiredis (target sturdy::redis). Without
# it the test compiles to one skipped case.
if(TARGET sturdy::redis)
  target_link_libraries(${name} PRIVATE sturdy::redis)
else()
  target_compile_definitions(${name} PRIVATE STURDY_NO_HIREDIS=1)
endif()
list(APPEND labels slow)  # talks to a real redis-server
