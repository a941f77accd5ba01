// What the store and pipeline tests start from: the bundled model, data/tinystories.txt's
// token ids, and an empty prefix store in a fresh temporary directory.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "ckv/model.h"
#include "ckv/prefix_store.h"
#include "test_util.h"

namespace ckv::test {

class BundledModelAndStore : public ::testing::Test {
 protected:
  explicit BundledModelAndStore(std::string store_tag) : store_tag_(std::move(store_tag)) {}
  void SetUp() override {
    model_ = LoadBundledModel();
    ASSERT_NE(model_, nullptr);
    ids_ = TinyStoriesIds(*model_);
    ASSERT_FALSE(ids_.empty());
    store_ = OpenTempStore(store_tag_);
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<Model> model_;
  std::vector<int32_t> ids_;
  std::unique_ptr<PrefixStore> store_;

 private:
  const std::string store_tag_;
};

}  // namespace ckv::test
