#include "data_dir.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace ckv::cli {
namespace {

namespace fs = std::filesystem;

bool HoldsBundledModel(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "models" / "stories260k" / "config.json", ec);
}

}  // namespace

Result<std::string> FindDataDir() {
  std::string looked;
  if (const char* env = std::getenv("CKV_DATA_DIR"); env != nullptr && *env != '\0') {
    if (HoldsBundledModel(env)) return std::string(env);
    // An explicit setting that is wrong is an error, not a reason to look elsewhere.
    return Status::NotFound("CKV_DATA_DIR=" + std::string(env) +
                            " holds no models/stories260k/config.json");
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return Status::NotFound("cannot resolve /proc/self/exe: " + ec.message());
  const fs::path bin = exe.parent_path();
  for (const fs::path& candidate : {bin / ".." / "share" / "contiguouskv", bin / ".."}) {
    std::string dir = candidate.lexically_normal().string();  // "/a/b/" from "/a/b/c/.."
    if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (HoldsBundledModel(dir)) return dir;
    looked += (looked.empty() ? "" : ", ") + dir;
  }
  return Status::NotFound("no data directory with models/stories260k (looked in " + looked +
                          "); set CKV_DATA_DIR or pass the path explicitly");
}

std::string DataPath(const std::string& relative) {
  auto dir = FindDataDir();
  return dir.ok() ? *dir + "/" + relative : "";
}

}  // namespace ckv::cli
