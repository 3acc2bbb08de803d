target_link_libraries(asio_stress_test PRIVATE sturdy::asio)
