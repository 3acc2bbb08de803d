target_link_libraries(asio_hedge_test PRIVATE sturdy::asio)
