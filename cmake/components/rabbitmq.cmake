# sturdy component `rabbitmq`: the RabbitMQ publisher, consumer and dead-letter
# queue (sturdy/rabbitmq/*.hpp). Needs librabbitmq (Debian: librabbitmq-dev),
# found as its CMake package rabbitmq-c. The contract every recipe follows is
# written down in CMakeLists.txt, "Optional components".
set(sturdy_rabbitmq_summary "the RabbitMQ client and dead-letter queue (sturdy/rabbitmq/*.hpp)")
set(sturdy_rabbitmq_pc_requires librabbitmq)

set(_sturdy_rabbitmq_global "")
if(STURDY_COMPONENT_SCOPE AND CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
  set(_sturdy_rabbitmq_global GLOBAL)
endif()
find_package(rabbitmq-c CONFIG QUIET ${_sturdy_rabbitmq_global})
unset(_sturdy_rabbitmq_global)
if(rabbitmq-c_FOUND AND TARGET rabbitmq::rabbitmq)
  sturdy_add_component(rabbitmq rabbitmq::rabbitmq)
else()
  sturdy_component_missing(rabbitmq "librabbitmq (Debian: librabbitmq-dev), found as CMake package rabbitmq-c")
endif()
