// Where ckv finds what it ships beside its binary: the bundled models, texts and plot scripts.
// Nothing is compiled in from the build machine, so an installed or copied ckv works anywhere.
#pragma once

#include <string>

#include "ckv/status.h"

namespace ckv::cli {

// The first of, in order:
//   1. $CKV_DATA_DIR;
//   2. <dir of the executable>/../share/contiguouskv   (the installed layout, `cmake --install`);
//   3. <dir of the executable>/..                      (a build directory inside the source tree,
//                                                       e.g. build/ckv);
// that holds models/stories260k/config.json. NotFound lists the places looked at.
Result<std::string> FindDataDir();

// DataDir()/<relative>, or "" when no data directory was found (the option then has no default
// and the command says where it looked).
std::string DataPath(const std::string& relative);

}  // namespace ckv::cli
