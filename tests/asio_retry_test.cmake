target_link_libraries(asio_retry_test PRIVATE sturdy::asio)
