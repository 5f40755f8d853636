// edgetrust-device: the reference device agent and simulator (see edgetrust/device/runner.h).
#include <cstdio>
#include <string>
#include <vector>

#include "edgetrust/device/options.h"
#include "edgetrust/device/runner.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(edgetrust::device::Usage().c_str(), stdout);
      return 0;
    }
  }
  auto options = edgetrust::device::ParseOptions(args);
  if (!options.ok()) {
    std::fprintf(stderr, "edgetrust-device: %s\n(see edgetrust-device --help)\n",
                 options.error().message.c_str());
    return 2;
  }
  return edgetrust::device::Run(*options);
}
