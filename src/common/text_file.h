// Small whole-file text writes (configs, benchmark reports), with the failure named.
#pragma once

#include <string>

#include "ckv/status.h"

namespace ckv {

// Replaces `path` with `text`; IOError naming the path if it cannot be written completely.
Status WriteTextFile(const std::string& path, const std::string& text);

}  // namespace ckv
