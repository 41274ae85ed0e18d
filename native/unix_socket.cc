// Connects to a unix socket in the abstract namespace with the exact address
// length. libuv (Node 20) passes the whole sun_path, NUL padding included,
// which names a different abstract socket than the one multipathd binds
// (libmpathcmd/mpath_cmd.c binds offsetof(sun_path) + 1 + strlen(name)).
// The fd goes to JS, which wraps it in a net.Socket; nothing else happens here.
#include "unix_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace mpw {
namespace {

Napi::Value ConnectUnixAbstract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    throw Napi::TypeError::New(env, "connectUnixAbstract(name): name must be a string");
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un addr{};
  if (name.empty() || name.size() > sizeof(addr.sun_path) - 1) {
    throw Napi::RangeError::New(env, "connectUnixAbstract: name must be 1 to 107 bytes");
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int err = 0;
  const char* syscall = "socket";
  if (fd >= 0) {
    syscall = "connect";
    // A unix stream connect completes at once or fails (EAGAIN: backlog full).
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      err = errno;
      close(fd);
      fd = -1;
    }
  } else {
    err = errno;
  }
  if (fd < 0) {
    Napi::Error e = Napi::Error::New(env, std::string(syscall) + " @" + name + ": " + std::strerror(err));
    e.Set("errno", Napi::Number::New(env, err));
    e.Set("syscall", Napi::String::New(env, syscall));
    throw e;
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitUnixSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("connectUnixAbstract", Napi::Function::New(env, ConnectUnixAbstract, "connectUnixAbstract"));
}

}  // namespace mpw
