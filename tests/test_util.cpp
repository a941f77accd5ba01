#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace ckv::test {
namespace {

struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
  }
};

TempDirs& Registry() {
  static TempDirs registry;
  return registry;
}

}  // namespace

std::string SourceDir() {
  return CKV_SOURCE_DIR;
}

std::string TestDataDir() {
  return SourceDir() + "/tests/data";
}

std::string TextDataDir() {
  return SourceDir() + "/data";
}

std::string BundledModelDir() {
  return SourceDir() + "/models/stories260k";
}

std::unique_ptr<Model> LoadBundledModel() {
  auto m = Model::Load(BundledModelDir());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

ModelConfig TinyConfig(int layers, int heads, int kv_heads, int head_dim) {
  ModelConfig c;
  c.arch = ModelArch::kQwen2;
  c.model_type = "qwen2";
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.hidden_size = heads * head_dim;
  c.vocab_size = 1000;
  return c;
}

std::string MakeTempDir(const std::string& tag) {
  std::string tmpl = (std::filesystem::temp_directory_path() / ("ckv-" + tag + "-XXXXXX")).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char* made = mkdtemp(buf.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << tmpl;
    return "";
  }
  Registry().dirs.push_back(made);
  return made;
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandRun RunCommand(const std::string& command_line) {
  const std::string cmd = command_line + " 2>&1";
  CommandRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

CommandRun RunCli(const std::string& args) {
  return RunCommand(std::string(CKV_CLI_PATH) + " " + args);
}

std::vector<int32_t> TinyStoriesIds(const Model& model) {
  auto ids = model.tokenizer()->Encode(ReadFileOrDie(TextDataDir() + "/tinystories.txt"), true);
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::unique_ptr<PrefixStore> OpenTempStore(const std::string& tag) {
  StoreOptions so;
  so.sync = false;
  auto s = PrefixStore::Open(MakeTempDir(tag), so);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

}  // namespace ckv::test
