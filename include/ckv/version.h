// The library's version and the git commit it was built from. Thread-safe (constants).
#pragma once

namespace ckv {

// The project version (CMake's project(VERSION)), e.g. "0.3.0".
const char* Version();
// The short commit hash of the build's source tree, "-dirty" appended when tracked files had
// uncommitted changes, or "unknown" when built outside a git checkout.
const char* GitCommit();

}  // namespace ckv
