// What edgetrust-device does with its parsed options: one agent, or N simulated agents on one loop.
#pragma once

#include "edgetrust/device/options.h"

namespace edgetrust::device {

// Runs until done (--count, --exit-after-enroll, --duration) or SIGINT/SIGTERM. Returns the
// process exit code: 0 success, 1 failure (setup error, or not all devices enrolled in time).
int Run(const Options& options);

}  // namespace edgetrust::device
