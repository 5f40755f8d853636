// The command line of edgetrust-device, parsed into an immutable configuration.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "edgetrust/common/result.h"

namespace edgetrust::device {

struct BrokerAddress {
  std::string host;
  int port = 8883;
};

// "mqtts://HOST[:PORT]" (IPv6 as "[::1]:8883"). Only TLS: a device always authenticates with a
// certificate.
Result<BrokerAddress> ParseBrokerUrl(const std::string& url);

struct Options {
  BrokerAddress broker;
  std::string ca_file;          // CA bundle that verifies the broker
  std::string birth_cert_file;  // single-device mode
  std::string birth_key_file;
  std::string state_dir;        // single device: its state; simulation: parent of per-device dirs
  int interval_seconds = 10;    // telemetry period; 0 = no telemetry
  std::string fw = "1.0.0";
  std::string model;            // empty: the OU of the birth certificate
  std::string claim;
  std::optional<int64_t> count;  // exit after this many telemetry messages
  bool exit_after_enroll = false;
  // Simulation: N devices from a factory output directory, on one loop.
  int simulate = 0;
  std::string factory_out;
  std::optional<int> duration_seconds;
  int stagger_ms = 20;           // delay between the first connects of simulated devices
  bool quiet = false;            // simulation: no per-device event lines
  // Seconds to wait for an enrollment or renewal answer before re-sending the same request.
  int response_timeout_seconds = 5;
  // Renew once, this many seconds after the first connect with the operational certificate, however
  // long it is still valid (demos and tests of the renewal path).
  std::optional<int> renew_after_seconds;

  bool simulating() const { return simulate > 0; }
};

// Parses argv without the program name. Errors are kInvalidArgument with a message meant for the
// user ("--interval: expected an integer in [0, 86400], got 'x'").
Result<Options> ParseOptions(const std::vector<std::string>& args);

// The --help text.
std::string Usage();

}  // namespace edgetrust::device
