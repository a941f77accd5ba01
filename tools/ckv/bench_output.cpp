#include "bench_output.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <sstream>

#include "ckv/text_file.h"
#include "data_dir.h"

namespace ckv::cli {

std::string Csv(const nlohmann::json& rows, const std::vector<std::string>& fields) {
  std::ostringstream csv;
  for (size_t i = 0; i < fields.size(); ++i) csv << (i ? "," : "") << fields[i];
  csv << "\n";
  for (const auto& row : rows) {
    for (size_t i = 0; i < fields.size(); ++i) {
      csv << (i ? "," : "");
      if (!row.contains(fields[i])) continue;
      const auto& v = row[fields[i]];
      if (!v.is_string()) {
        csv << v.dump();
        continue;
      }
      csv << '"';
      for (char ch : v.get<std::string>()) csv << (ch == '"' ? "\"\"" : std::string(1, ch));
      csv << '"';
    }
    csv << "\n";
  }
  return csv.str();
}

Status WriteBenchTables(const std::string& out, const nlohmann::json& requests,
                        const std::vector<std::string>& request_fields,
                        const nlohmann::json& summary,
                        const std::vector<std::string>& summary_fields) {
  for (const Status& st : {WriteTextFile(out + "/requests.json", requests.dump(1) + "\n"),
                           WriteTextFile(out + "/requests.csv", Csv(requests, request_fields)),
                           WriteTextFile(out + "/summary.json", summary.dump(1) + "\n"),
                           WriteTextFile(out + "/summary.csv", Csv(summary, summary_fields))}) {
    if (!st.ok()) return st;
  }
  return Status::OK();
}

void RenderPlots(const std::string& script_name, const std::string& out) {
  const std::string script = DataPath(script_name);
  if (script.empty() || ::access(script.c_str(), X_OK) != 0) {
    std::cerr << "warning: no plots: " << (script.empty() ? script_name : script)
              << " is not there\n";
    return;
  }
  std::vector<char*> argv = {const_cast<char*>(script.c_str()), const_cast<char*>(out.c_str()),
                             nullptr};
  // The script's messages go to stderr: stdout carries the summary JSON.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, script.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    std::cerr << "warning: no plots: cannot run " << script << "\n";
    return;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::cerr << "warning: " << script
              << " failed (see above; it needs python3-matplotlib): no plots; the data is in "
              << out << "\n";
  }
}

}  // namespace ckv::cli
