target_link_libraries(asio_timeout_test PRIVATE sturdy::asio)
