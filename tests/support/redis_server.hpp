// Test support for the Redis store: a private `redis-server` child process
// on a free loopback port (start, SIGKILL, SIGSTOP/SIGCONT, restart), the
// address tests use (`STURDY_REDIS_URL`, or a private server started once per
// process when it is unset), unique key prefixes, and spawning this test
// binary again as a child process running one test.
#ifndef STURDY_TESTS_SUPPORT_REDIS_SERVER_HPP_
#define STURDY_TESTS_SUPPORT_REDIS_SERVER_HPP_

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace sturdy::test {

// A free TCP port on 127.0.0.1 (bound and released: a tiny race, fine here).
inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// True when a PING to host:port gets a reply within ~100 ms (an error reply
// such as NOAUTH counts: the server is up).
inline bool redis_answers(const std::string& host, int port) {
  redisContext* c = redisConnectWithTimeout(host.c_str(), port, timeval{0, 100000});
  bool ok = false;
  if (c != nullptr && c->err == 0) {
    (void)redisSetTimeout(c, timeval{0, 200000});
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    ok = r != nullptr && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
    if (r != nullptr) freeReplyObject(r);
  }
  if (c != nullptr) redisFree(c);
  return ok;
}

// A redis-server child process (never daemonized), on loopback only, its
// output discarded. Killed (SIGCONT, SIGKILL) by kill() and the destructor,
// and by the kernel when the thread that started it exits (PR_SET_PDEATHSIG):
// start it from the main thread.
class redis_server {
 public:
  explicit redis_server(int port = free_loopback_port()) : port_(port) {}
  // Extra redis-server arguments, e.g. {"--requirepass", "secret"}.
  explicit redis_server(std::vector<std::string> extra_args, int port = free_loopback_port())
      : port_(port), extra_args_(std::move(extra_args)) {}
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  ~redis_server() { kill(); }

  // Starts the server and waits (up to 5 s) until it answers. False when
  // redis-server is not on PATH or does not come up.
  bool start() {
    if (pid_ > 0) return true;
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {"redis-server", "--port", port,           "--bind",     "127.0.0.1",
                                     "--save",       "",       "--appendonly", "no",         "--daemonize",
                                     "no",           "--dir",  "/tmp",         "--loglevel", "warning"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // fork + exec rather than posix_spawn, to set up the child before exec
    // with only async-signal-safe calls (the test process has threads):
    // - stdin/stdout/stderr on /dev/null: an orphaned server (the test
    //   crashed) must not hold ctest's output pipe open, or ctest waits for
    //   it until its own timeout;
    // - PR_SET_PDEATHSIG(SIGKILL): the server dies with the thread that
    //   started it (the main thread, for the tests here), even when the test
    //   process crashes and no destructor runs; SIGKILL also ends a server
    //   left stopped by pause().
    const pid_t parent = ::getpid();
    const int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) return false;
    pid_ = ::fork();
    if (pid_ == 0) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(127);
      (void)::dup2(devnull, 0);
      (void)::dup2(devnull, 1);
      (void)::dup2(devnull, 2);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    ::close(devnull);
    if (pid_ < 0) {
      pid_ = 0;
      return false;
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < until) {
      if (redis_answers("127.0.0.1", port_)) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill();
    return false;
  }
  // SIGKILL (a crash: no save, no goodbye) and reap.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    (void)::waitpid(pid_, &status, 0);
    pid_ = 0;
  }
  void pause() const { ::kill(pid_, SIGSTOP); }
  void resume() const { ::kill(pid_, SIGCONT); }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool running() const { return pid_ > 0; }

 private:
  int port_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = 0;
};

// The Redis the tests use: `STURDY_REDIS_URL` (host:port) when set,
// otherwise a private server started on first use and killed at exit.
// Empty when neither works (redis-server missing): callers FAIL, not skip.
inline std::string redis_address() {
  if (const char* url = std::getenv("STURDY_REDIS_URL"); url != nullptr && *url != '\0') return url;
  static redis_server server;  // killed by its destructor at exit
  static const bool started = server.start();
  return started ? server.address() : std::string();
}

// A prefix no other test run shares: "sturdy-test:<pid>:<random>:<tag>:".
inline std::string unique_prefix(const std::string& tag) {
  static const std::string run = [] {
    std::random_device rd;
    std::mt19937_64 gen(static_cast<std::uint64_t>(rd()) ^ static_cast<std::uint64_t>(::getpid()));
    return std::to_string(::getpid()) + ":" + std::to_string(gen() % 1000000007ULL);
  }();
  return "sturdy-test:" + run + ":" + tag + ":";
}

// Runs this executable again with `--gtest_filter=<test>` (disabled tests
// included) and `env` added to the environment; returns the pid.
inline pid_t spawn_self(const std::string& test, const std::vector<std::string>& env) {
  std::vector<std::string> args = {"/proc/self/exe", "--gtest_filter=" + test,
                                   "--gtest_also_run_disabled_tests", "--gtest_brief=1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> envs = env;
  for (char** e = environ; *e != nullptr; ++e) envs.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()) != 0) return 0;
  return pid;
}

// Waits for `pid`; its exit code, or -1 when it did not exit normally.
inline int wait_exit(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace sturdy::test

#endif  // STURDY_TESTS_SUPPORT_REDIS_SERVER_HPP_
