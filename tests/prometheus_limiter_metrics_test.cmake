# Needs prometheus-cpp (target sturdy::prometheus).
if(TARGET sturdy::prometheus)
  target_link_libraries(${name} PRIVATE sturdy::prometheus)
else()
  target_compile_definitions(${name} PRIVATE STURDY_NO_PROMETHEUS=1)
endif()
