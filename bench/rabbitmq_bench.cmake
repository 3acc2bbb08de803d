# Needs librabbitmq (target sturdy::rabbitmq); without it the benchmark builds
# to a program that says so and exits 0. Needs a broker (STURDY_RABBITMQ_URL).
if(TARGET sturdy::rabbitmq)
  target_link_libraries(${name} PRIVATE sturdy::rabbitmq)
else()
  target_compile_definitions(${name} PRIVATE STURDY_NO_RABBITMQ=1)
endif()
