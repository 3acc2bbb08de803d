target_link_libraries(asio_retry_stress_test PRIVATE sturdy::asio)
