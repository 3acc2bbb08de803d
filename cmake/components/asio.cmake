# sturdy component `asio`: the Asio drivers (sturdy/asio/*.hpp): async
# admission for the limiters and the breaker, and hedging. Boost 1.81's Asio is
# header-only and Boost is already a core dependency, so this component needs
# only Threads. The contract every recipe follows is written down in
# CMakeLists.txt, "Optional components".
set(sturdy_asio_summary "the Asio drivers (sturdy/asio/*.hpp)")
set(sturdy_asio_pc_requires "")

find_package(Threads QUIET)
if(Threads_FOUND)
  sturdy_add_component(asio Threads::Threads)
else()
  sturdy_component_missing(asio "a threads library")
endif()
