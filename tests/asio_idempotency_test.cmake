target_link_libraries(asio_idempotency_test PRIVATE sturdy::asio)
