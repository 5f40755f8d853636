// The mosquitto.conf fragment `edgetrust site init` writes.
#pragma once

#include <string>

namespace edgetrust::tools {

struct BrokerConfigPaths {
  std::string site_id;
  int port = 8883;
  std::string cafile;    // trust.pem (absolute)
  std::string capath;    // trust.d (absolute)
  std::string certfile;  // broker.pem
  std::string keyfile;   // broker.key
  std::string plugin;    // mosquitto_edgetrust.so
  std::string store;     // store directory
  std::string policy;    // policy.yaml
};

std::string MosquittoConfText(const BrokerConfigPaths& paths);

// Where mosquitto_edgetrust.so is: `requested` when given, else beside the running executable
// (the build tree), else the installed copy.
std::string ResolvePluginPath(const std::string& requested);

}  // namespace edgetrust::tools
