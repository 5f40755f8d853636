// The command line of edgetrust-gateway, parsed into an immutable configuration.
#pragma once

#include <string>
#include <vector>

#include "edgetrust/common/result.h"

namespace edgetrust::gateway {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

struct GatewayOptions {
  std::string policy_file;
  std::string store_dir;
  std::string broker_host;
  int broker_port = 8883;
  std::string ca_file;    // verifies the broker
  std::string cert_file;  // the gateway principal (CN = its MQTT client id)
  std::string key_file;
  std::string site_ca_file;      // empty: the policy's trust.site_ca
  std::string site_ca_key_file;  // empty: site-ca.key beside the policy file
  // Per-device cloud certificates (aws-iot `identity: device`); empty: `cloud` beside the store.
  std::string cloud_dir;
  LogLevel log_level = LogLevel::kInfo;
  // Enrollment/renewal requests per device: a bucket of `rate_burst` refilled over
  // `rate_window_seconds`.
  int rate_burst = 5;
  int rate_window_seconds = 10;
  // Enrollment/renewal requests that may wait for their turn (about 1.2 KiB each); beyond it a
  // request is dropped and its device asks again after its response timeout.
  int request_queue = 2048;
  uint32_t session_expiry_seconds = 7 * 24 * 3600;
};

// argv without the program name. kInvalidArgument with a message for the user.
Result<GatewayOptions> ParseGatewayOptions(const std::vector<std::string>& args);

std::string GatewayUsage();

}  // namespace edgetrust::gateway
