// What edgetrust-device does with its parsed options: one agent, or N simulated agents on one loop.
#pragma once

#include <cstdint>

#include "edgetrust/device/options.h"
#include "edgetrust/mqtt/uv_mqtt_client.h"

namespace edgetrust::device {

// Descriptors one simulated device may hold at once: its connection and, while it switches
// certificates, the one it replaces (see kDescriptorsPerReplacedClient); its state directory's
// lock; a file it writes or reads (its identity, the CA file at each TLS connect).
inline constexpr uint64_t kDescriptorsPerSimulatedDevice = mqtt::kDescriptorsPerReplacedClient + 2;

// Runs until done (--count, --exit-after-enroll, --duration) or SIGINT/SIGTERM. Returns the
// process exit code: 0 success, 1 failure (setup error, or not all devices enrolled in time).
int Run(const Options& options);

}  // namespace edgetrust::device
