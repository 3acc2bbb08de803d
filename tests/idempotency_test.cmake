target_link_libraries(${name} PRIVATE absl::status absl::statusor)
