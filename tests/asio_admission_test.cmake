target_link_libraries(asio_admission_test PRIVATE sturdy::asio)
