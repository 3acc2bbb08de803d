target_link_libraries(asio_compose_test PRIVATE sturdy::asio)
