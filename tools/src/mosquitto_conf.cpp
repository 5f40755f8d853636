#include "mosquitto_conf.h"

#include "files.h"

#ifndef ET_INSTALLED_PLUGIN
#define ET_INSTALLED_PLUGIN "/usr/local/lib/edgetrust/mosquitto_edgetrust.so"
#endif

namespace edgetrust::tools {

std::string MosquittoConfText(const BrokerConfigPaths& p) {
  std::string port = std::to_string(p.port);
  return "# Written by `edgetrust site init` for site " + p.site_id + ".\n"
         "# Run it as is (mosquitto -c this-file) or include it from your mosquitto.conf.\n"
         "\n"
         "# Security settings apply to every listener, so the plugin sees every client.\n"
         "per_listener_settings false\n"
         "# Without it every TLS 1.3 handshake waits ~40 ms on a delayed ACK.\n"
         "set_tcp_nodelay true\n"
         "# While the gateway restarts, its persistent session holds every device's data; the\n"
         "# default of 1000 messages per client would drop the rest.\n"
         "max_queued_messages 100000\n"
         "\n"
         "listener " + port + "\n"
         "cafile " + p.cafile + "\n"
         "# CAs added later (edgetrust site add-manufacturer) are found here without a restart.\n"
         "capath " + p.capath + "\n"
         "certfile " + p.certfile + "\n"
         "keyfile " + p.keyfile + "\n"
         "require_certificate true\n"
         "# The plugin authenticates by certificate; with true Mosquitto would never ask it.\n"
         "use_identity_as_username false\n"
         "\n"
         "# Only the plugin admits clients; if it ever defers, Mosquitto refuses.\n"
         "allow_anonymous false\n"
         "plugin " + p.plugin + "\n"
         "plugin_opt_store " + p.store + "\n"
         "plugin_opt_policy " + p.policy + "\n";
}

std::string ResolvePluginPath(const std::string& requested) {
  if (!requested.empty()) return AbsolutePath(requested);
  std::string dir = ExecutableDirectory();
  if (!dir.empty()) {
    std::string beside = dir + "/mosquitto_edgetrust.so";
    if (FileExists(beside)) return beside;
  }
  return ET_INSTALLED_PLUGIN;
}

}  // namespace edgetrust::tools
