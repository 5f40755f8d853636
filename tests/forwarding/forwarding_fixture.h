// Shared pieces of the forwarding tests: test PKI, brokers configured like each cloud, a loop
// driven from the test thread, and a policy builder.
#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edgetrust/forwarding/forwarder.h"
#include "edgetrust/policies/policy.h"
#include "edgetrust/storage/store.h"
#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"

namespace edgetrust::forwarding::test {

struct TestPki {
  std::string ca;
  std::string server_cert, server_key;  // SAN localhost, 127.0.0.1
  std::string client_cert, client_key;  // CN edge-01 (the "thing")
};
TestPki MakeTestPki(const std::string& dir);

// Every broker has a second, anonymous plain listener (`observer_port`) for the test's own client.
testing::Broker StartPlainBroker(const std::string& dir, int port, int observer_port,
                                 const std::string& password_file);
testing::Broker StartAwsLikeBroker(const std::string& dir, int port, int observer_port,
                                   const TestPki& pki);
testing::Broker StartAzureLikeBroker(const std::string& dir, int port, int observer_port,
                                     const TestPki& pki, const std::string& hostname,
                                     const std::string& group_key);

// A policy with one group per (group, route) and the given upstreams.
std::shared_ptr<policies::Policy> MakePolicy(
    const std::vector<policies::Upstream>& upstreams,
    const std::vector<std::pair<std::string, std::string>>& group_routes,
    policies::QueuePolicy queue = {});

// "dev|seq" payloads, and their parsing back.
Bytes Payload(const std::string& device, int seq);
std::pair<std::string, int> ParsePayload(const std::string& payload);

// A TestClient on an observer listener that keeps every message it receives.
class Observer {
 public:
  Observer(int port, const std::string& filter, int qos = 2);
  // Moves what arrived so far into messages().
  void Poll();
  std::vector<testing::ReceivedMessage>& messages() { return messages_; }
  testing::TestClient& client() { return client_; }

 private:
  testing::TestClient client_;
  std::vector<testing::ReceivedMessage> messages_;
};

class ForwardingTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Runs the loop until `done` or the timeout; returns done().
  bool RunUntil(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void RunFor(std::chrono::milliseconds duration);

  storage::Store& store() { return *store_; }
  void CreateForwarder(std::shared_ptr<const policies::Policy> policy, ForwarderOptions options = {});
  // Submits and counts completions in ok_/failed_.
  void Submit(const std::string& device, const std::string& group, const std::string& channel,
              Bytes payload, int qos = 1);

  uv_loop_t loop_{};
  uv_timer_t tick_{};
  testing::TempDir tmp_;
  std::optional<storage::Store> store_;
  std::unique_ptr<Forwarder> forwarder_;
  std::vector<Downlink> downlinks_;
  int submitted_ = 0, ok_ = 0, failed_ = 0;
  std::vector<Error> errors_;
};

}  // namespace edgetrust::forwarding::test
