#include "factory.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>

#include "edgetrust/pki/pkcs11.h"
#include "files.h"
#include "pki_output.h"

namespace edgetrust::tools {

std::string FactoryConfigYaml(const FactoryConfig& c) {
  YAML::Emitter out;
  out << YAML::Comment("Written by `edgetrust factory init`. No secret in here.");
  out << YAML::BeginMap;
  out << YAML::Key << "manufacturer" << YAML::Value << c.manufacturer;
  out << YAML::Key << "ca" << YAML::Value << c.ca_cert;
  out << YAML::Key << "key" << YAML::Value << YAML::BeginMap;
  if (c.in_token()) {
    out << YAML::Key << "pkcs11" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "module" << YAML::Value << c.pkcs11_module;
    out << YAML::Key << "token" << YAML::Value << c.token_label;
    out << YAML::Key << "label" << YAML::Value << c.key_label;
    if (!c.pin_env.empty()) out << YAML::Key << "pin_env" << YAML::Value << c.pin_env;
    out << YAML::EndMap;
  } else {
    out << YAML::Key << "file" << YAML::Value << c.key_file;
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

Result<FactoryConfig> LoadFactoryConfig(const std::string& dir) {
  const std::string path = dir + "/factory.yaml";
  ET_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  FactoryConfig c;
  try {
    YAML::Node root = YAML::Load(text);
    auto str = [](const YAML::Node& n) { return n ? n.as<std::string>() : std::string(); };
    c.manufacturer = str(root["manufacturer"]);
    if (root["ca"]) c.ca_cert = str(root["ca"]);
    YAML::Node key = root["key"];
    if (key && key["pkcs11"]) {
      YAML::Node p = key["pkcs11"];
      c.key_file.clear();
      c.pkcs11_module = str(p["module"]);
      c.token_label = str(p["token"]);
      c.key_label = str(p["label"]);
      c.pin_env = str(p["pin_env"]);
      if (c.pkcs11_module.empty() || c.token_label.empty() || c.key_label.empty()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         path + ": key.pkcs11 needs module, token and label");
      }
    } else if (key && key["file"]) {
      c.key_file = str(key["file"]);
    }
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, path + ": " + e.what());
  }
  if (!IsValidName(c.manufacturer)) {
    return MakeError(ErrorCode::kInvalidArgument, path + ": missing or invalid manufacturer");
  }
  return c;
}

Result<std::string> ResolvePin(const std::string& pin, const std::string& pin_env,
                               const std::string& configured_pin_env) {
  if (!pin.empty()) return pin;
  const std::string& var = !pin_env.empty() ? pin_env : configured_pin_env;
  if (var.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the factory key is in a PKCS#11 token: give --pin or --pin-env VAR");
  }
  const char* value = std::getenv(var.c_str());
  if (value == nullptr || *value == '\0') {
    return MakeError(ErrorCode::kInvalidArgument, "environment variable " + var + " is not set");
  }
  return std::string(value);
}

Result<FactorySigner> OpenFactory(const std::string& dir, const std::string& pin,
                                  const std::string& pin_env) {
  ET_ASSIGN_OR_RETURN(FactoryConfig config, LoadFactoryConfig(dir));
  ET_ASSIGN_OR_RETURN(pki::Certificate ca, LoadCertificate(dir + "/" + config.ca_cert));
  if (!config.in_token()) {
    const std::string key_path = dir + "/" + config.key_file;
    auto key = pki::LoadPrivateKeyFile(key_path);
    if (!key.ok()) return MakeError(key.error().code, key_path + ": " + key.error().message);
    return FactorySigner{std::move(config), std::move(ca), std::move(key).value()};
  }
  ET_ASSIGN_OR_RETURN(std::string resolved_pin, ResolvePin(pin, pin_env, config.pin_env));
  auto token = pki::Pkcs11Token::Open(config.pkcs11_module, config.token_label, resolved_pin);
  if (!token.ok()) {
    return MakeError(token.error().code,
                     "token " + config.token_label + ": " + token.error().message);
  }
  auto key = token->FindKey(config.key_label);
  if (!key.ok()) {
    return MakeError(key.error().code, "token " + config.token_label + ", key " +
                                           config.key_label + ": " + key.error().message);
  }
  return FactorySigner{std::move(config), std::move(ca), std::move(key).value()};
}

}  // namespace edgetrust::tools
