// A factory directory: the manufacturer CA and where its key lives (file or PKCS#11 token).
#pragma once

#include <string>

#include "edgetrust/common/result.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/pki/key.h"

namespace edgetrust::tools {

// DIR/factory.yaml. Never holds a PIN: only the name of the environment variable to read it from.
struct FactoryConfig {
  std::string manufacturer;
  std::string ca_cert = "ca.pem";  // relative to the factory directory
  std::string key_file = "ca.key"; // empty when the key is in a token
  std::string pkcs11_module;       // set when the key is in a token
  std::string token_label;
  std::string key_label;
  std::string pin_env;

  bool in_token() const { return !pkcs11_module.empty(); }
};

std::string FactoryConfigYaml(const FactoryConfig& config);
Result<FactoryConfig> LoadFactoryConfig(const std::string& dir);

// The PIN from --pin, else the variable named by --pin-env, else the one factory.yaml names.
Result<std::string> ResolvePin(const std::string& pin, const std::string& pin_env,
                               const std::string& configured_pin_env);

// The CA certificate and its signing key, ready to issue.
struct FactorySigner {
  FactoryConfig config;
  pki::Certificate ca;
  pki::PrivateKey key;
};

Result<FactorySigner> OpenFactory(const std::string& dir, const std::string& pin,
                                  const std::string& pin_env);

}  // namespace edgetrust::tools
