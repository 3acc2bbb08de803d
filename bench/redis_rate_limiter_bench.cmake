# Needs hiredis (target sturdy::redis); without it the benchmark builds to a
# program that says so and exits 0.
if(TARGET sturdy::redis)
  target_link_libraries(${name} PRIVATE sturdy::redis)
else()
  target_compile_definitions(${name} PRIVATE STURDY_NO_HIREDIS=1)
endif()
