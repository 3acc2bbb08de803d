# The limiter's blocking driver on each library clock: these tests wait in
# real time (a few ms at most; a watchdog of seconds turns a hang into a
# failure): label slow.
# (One label: gtest_discover_tests takes a single LABELS value.)
set(labels slow)
