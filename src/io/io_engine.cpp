#include "io/io_engine.h"

#include <climits>
#include <cstdlib>
#include <string>

namespace ckv::io {

Result<IoBackend> ParseIoBackend(const std::string& name) {
  if (name == "auto") return IoBackend::kAuto;
  if (name == "uring" || name == "io_uring") return IoBackend::kUring;
  if (name == "threads") return IoBackend::kThreads;
  return Status::InvalidArgument("unknown I/O backend '" + name +
                                 "' (expected auto, uring or threads)");
}

const char* IoBackendName(IoBackend backend) {
  switch (backend) {
    case IoBackend::kAuto:
      return "auto";
    case IoBackend::kUring:
      return "io_uring";
    case IoBackend::kThreads:
      return "threads";
  }
  return "?";
}

Status ValidateReadRequest(const ReadRequest& r) {
  const std::string what = "read request (tag " + std::to_string(r.tag) + ")";
  if (r.fd < 0) return Status::InvalidArgument(what + ": bad file descriptor");
  if (r.length > static_cast<uint32_t>(INT32_MAX))
    return Status::InvalidArgument(what + ": length " + std::to_string(r.length) +
                                   " exceeds INT32_MAX");
  if (r.length > 0 && r.dst == nullptr) return Status::InvalidArgument(what + ": null destination");
  if (r.offset > static_cast<uint64_t>(INT64_MAX) - r.length)
    return Status::InvalidArgument(what + ": offset " + std::to_string(r.offset) + " out of range");
  return Status::OK();
}

Result<std::unique_ptr<IoEngine>> IoEngine::Create(const IoOptions& options) {
  if (options.queue_depth < 1 || options.queue_depth > 4096)
    return Status::InvalidArgument("I/O engine: queue depth " +
                                   std::to_string(options.queue_depth) + " not in 1..4096");
  if (options.threads < 1 || options.threads > 256)
    return Status::InvalidArgument("I/O engine: thread count " + std::to_string(options.threads) +
                                   " not in 1..256");
  IoBackend backend = options.backend;
  if (backend == IoBackend::kAuto) {
    if (const char* env = std::getenv("CKV_IO_BACKEND"); env != nullptr && *env != '\0') {
      auto parsed = ParseIoBackend(env);
      if (!parsed.ok()) return parsed.status().WithContext("CKV_IO_BACKEND");
      backend = *parsed;
    }
  }
  switch (backend) {
    case IoBackend::kUring:
      return CreateUringEngine(options);
    case IoBackend::kThreads:
      return CreateThreadPoolEngine(options.threads);
    case IoBackend::kAuto:
      break;
  }
  auto uring = CreateUringEngine(options);
  if (uring.ok()) return uring;
  auto threads = CreateThreadPoolEngine(options.threads);
  if (!threads.ok()) return threads.status();
  (*threads)->fallback_reason_ = uring.status().message();
  return threads;
}

}  // namespace ckv::io
