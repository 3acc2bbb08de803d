# The RabbitMQ client's tests need librabbitmq (target sturdy::rabbitmq) and a
# broker (STURDY_RABBITMQ_URL; scripts/test.sh starts a private one). Without
# librabbitmq the test compiles to one skipped case. Against a real broker,
# restarted by one test: label slow, and never two broker tests at once.
if(TARGET sturdy::rabbitmq)
  target_link_libraries(${name} PRIVATE sturdy::rabbitmq)
  target_compile_definitions(${name} PRIVATE
    STURDY_RABBITMQ_SCRIPT="${CMAKE_CURRENT_SOURCE_DIR}/support/rabbitmq_server.sh")
else()
  target_compile_definitions(${name} PRIVATE STURDY_NO_RABBITMQ=1)
endif()
# (One label: gtest_discover_tests takes a single LABELS value.)
set(labels slow)
set(test_properties RESOURCE_LOCK rabbitmq_broker)
