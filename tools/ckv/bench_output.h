// What the benchmarks write besides JSON: CSV tables and the matplotlib plots.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ckv/status.h"

namespace ckv::cli {

// `rows` (a JSON array of objects) as CSV with the given columns; strings quoted.
std::string Csv(const nlohmann::json& rows, const std::vector<std::string>& fields);

// Writes what every benchmark writes into `out`: requests.json/.csv (one row per request)
// and summary.json/.csv (one row per system and setting), each CSV with the given columns.
// The first failed write is returned, naming the file.
Status WriteBenchTables(const std::string& out, const nlohmann::json& requests,
                        const std::vector<std::string>& request_fields,
                        const nlohmann::json& summary,
                        const std::vector<std::string>& summary_fields);

// Runs the bundled plot script (a path under the data directory, e.g. bench/plot_serve.py)
// on the output directory `out`. Missing Python or matplotlib costs the plots, not the run:
// the data is written already (a warning on stderr says so).
void RenderPlots(const std::string& script_name, const std::string& out);

}  // namespace ckv::cli
