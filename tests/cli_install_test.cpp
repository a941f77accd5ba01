// The CLI as a user installs it: `--version`, and where ckv finds its bundled model and texts
// (beside its own binary, never a path of the machine it was built on).
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>

#include "test_util.h"

namespace ckv {
namespace {

namespace fs = std::filesystem;

TEST(CliVersion, PrintsVersionAndCommit) {
  const auto r = test::RunCli("--version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(
      std::regex_search(r.output, std::regex(R"(^ckv \d+\.\d+\.\d+ \(commit [0-9a-z-]+\))")))
      << r.output;
}

// A copy of the binary laid out as `cmake --install` lays it out: PREFIX/bin/ckv and
// PREFIX/share/contiguouskv/models/stories260k. Run from a directory far from the source tree.
fs::path InstallCopy(const std::string& tag, bool with_data) {
  const fs::path prefix = test::MakeTempDir(tag);
  fs::create_directories(prefix / "bin");
  fs::copy_file(CKV_CLI_PATH, prefix / "bin" / "ckv");
  if (with_data) {
    const fs::path models = prefix / "share" / "contiguouskv" / "models";
    fs::create_directories(models);
    fs::copy(test::BundledModelDir(), models / "stories260k", fs::copy_options::recursive);
  }
  return prefix;
}

TEST(CliInstall, InstalledBinaryFindsTheBundledModelBesideItself) {
  const fs::path prefix = InstallCopy("cli-install", /*with_data=*/true);
  const auto r =
      test::RunCommand("cd / && env -u CKV_DATA_DIR " + (prefix / "bin" / "ckv").string() +
                       " generate --prompt 'Once upon a time' --max-tokens 4");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Once upon a time"), std::string::npos) << r.output;
}

TEST(CliInstall, WithoutDataTheErrorSaysWhereItLookedAndHowToFixIt) {
  const fs::path prefix = InstallCopy("cli-install-bare", /*with_data=*/false);
  const auto r =
      test::RunCommand("cd / && env -u CKV_DATA_DIR " + (prefix / "bin" / "ckv").string() +
                       " generate --prompt hi --max-tokens 2");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no --model given"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find((prefix / "share" / "contiguouskv").string()), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("CKV_DATA_DIR"), std::string::npos) << r.output;
  // An explicit --model still works without any bundled data.
  const auto m = test::RunCommand((prefix / "bin" / "ckv").string() + " generate --model " +
                                  test::BundledModelDir() + " --prompt hi --max-tokens 2");
  EXPECT_EQ(m.exit_code, 0) << m.output;
}

TEST(CliInstall, DataDirEnvironmentOverridesAndAWrongOneIsAnError) {
  const fs::path prefix = InstallCopy("cli-install-env", /*with_data=*/false);
  const std::string ckv = (prefix / "bin" / "ckv").string();
  const auto ok = test::RunCommand("CKV_DATA_DIR=" + test::SourceDir() + " " + ckv +
                                   " generate --prompt hi --max-tokens 2");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  const auto bad =
      test::RunCommand("CKV_DATA_DIR=/nonexistent " + ckv + " generate --prompt hi --max-tokens 2");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("CKV_DATA_DIR=/nonexistent"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace ckv
