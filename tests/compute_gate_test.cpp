// The compute gate: every piece of model compute, a request's or a background store's, runs on
// the one thread the gate owns (so the process has one OpenMP pool), callers get its status or
// its exception, and a background piece waits while a request is pending.
#include "server/compute_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ckv::server {
namespace {

TEST(ComputeGate, RequestsAndBackgroundPiecesRunOnOneThreadNotTheCallers) {
  ComputeGate gate(0.5);
  std::mutex mu;
  std::vector<std::thread::id> ran_on;
  auto record = [&] {
    std::lock_guard<std::mutex> lock(mu);
    ran_on.push_back(std::this_thread::get_id());
    return Status::OK();
  };
  std::thread::id request_caller, store_caller;
  std::thread requests([&] {
    request_caller = std::this_thread::get_id();
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(gate.RunForRequest(record).ok());
  });
  std::thread stores([&] {
    store_caller = std::this_thread::get_id();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(gate.RunBackgroundPiece(record).ok());
  });
  requests.join();
  stores.join();
  ASSERT_EQ(ran_on.size(), 23u);
  for (const auto& id : ran_on) {
    EXPECT_EQ(id, ran_on[0]);
    EXPECT_NE(id, request_caller);
    EXPECT_NE(id, store_caller);
    EXPECT_NE(id, std::this_thread::get_id());
  }
}

TEST(ComputeGate, TheCallerGetsTheStatusOrTheException) {
  ComputeGate gate;
  EXPECT_EQ(gate.RunForRequest([] { return Status::IOError("disk"); }).ToString(),
            Status::IOError("disk").ToString());
  EXPECT_THROW(gate.RunForRequest([]() -> Status { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_THROW(gate.RunBackgroundPiece([]() -> Status { throw std::bad_alloc(); }), std::bad_alloc);
  // The gate goes on after both.
  EXPECT_TRUE(gate.RunForRequest([] { return Status::OK(); }).ok());
  EXPECT_TRUE(gate.RunBackgroundPiece([] { return Status::OK(); }).ok());
}

TEST(ComputeGate, ABackgroundPieceWaitsWhileARequestIsPendingWithoutAShare) {
  ComputeGate gate(0);  // background only when idle
  gate.RequestPending();
  std::atomic<bool> ran{false};
  std::thread store([&] {
    EXPECT_TRUE(gate.RunBackgroundPiece([&] {
                      ran = true;
                      return Status::OK();
                    })
                    .ok());
  });
  // Requests keep computing meanwhile.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(gate.RunForRequest([] { return Status::OK(); }).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(ran.load());
  gate.RequestDone();
  store.join();
  EXPECT_TRUE(ran.load());
}

}  // namespace
}  // namespace ckv::server
