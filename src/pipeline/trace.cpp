#include "pipeline/trace.h"

#include <fstream>
#include <nlohmann/json.hpp>

namespace ckv {

double Tracer::NowUs() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0_).count();
}

void Tracer::Complete(Track track, std::string name, double begin_us, double end_us,
                      std::string args_json) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back({track, std::move(name), begin_us, end_us, std::move(args_json)});
}

Status Tracer::WriteJson(const std::string& path) const {
  nlohmann::json events = nlohmann::json::array();
  events.push_back(
      {{"name", "process_name"}, {"ph", "M"}, {"pid", 1}, {"args", {{"name", "ckv reprefill"}}}});
  events.push_back({{"name", "thread_name"},
                    {"ph", "M"},
                    {"pid", 1},
                    {"tid", kCompute},
                    {"args", {{"name", "compute"}}}});
  events.push_back({{"name", "thread_name"},
                    {"ph", "M"},
                    {"pid", 1},
                    {"tid", kIo},
                    {"args", {{"name", "I/O"}}}});
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Event& e : events_) {
      nlohmann::json j{{"name", e.name},   {"ph", "X"},
                       {"pid", 1},         {"tid", static_cast<int>(e.track)},
                       {"ts", e.begin_us}, {"dur", std::max(0.0, e.end_us - e.begin_us)}};
      if (!e.args.empty()) j["args"] = nlohmann::json::parse(e.args, nullptr, false);
      events.push_back(std::move(j));
    }
  }
  std::ofstream out(path, std::ios::trunc);
  out << nlohmann::json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump() << "\n";
  out.close();
  if (!out) return Status::IOError("cannot write trace file " + path);
  return Status::OK();
}

}  // namespace ckv
