// Paths to the bundled models and to the shared reference data used by tests.
#pragma once

#include <string>

namespace ckv::test {

// Repository root (compiled in).
std::string SourceDir();
// `../shared` beside the repository (read-only reference data); CKV_SHARED_DIR overrides.
std::string SharedDir();
// The bundled default model.
std::string BundledModelDir();
// A fresh, empty temporary directory removed at process exit.
std::string MakeTempDir(const std::string& tag);
// Whole file as a string; aborts the test on failure.
std::string ReadFileOrDie(const std::string& path);

}  // namespace ckv::test
