// Test-only mosquitto plugin that plays Azure IoT Hub's door: a CONNECT is accepted only with
// username "{hostname}/{client id}/?api-version=2021-04-12" and a SAS token for
// "{hostname}/devices/{client id}" signed with the key derived from the group key (DPS
// enrollment group). Written independently of edgetrust's own SAS code: OpenSSL, own encoding.
//   plugin_opt_hostname  testhub.azure-devices.net
//   plugin_opt_group_key <base64>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <ctime>
#include <map>
#include <string>

namespace {

struct Config {
  std::string hostname;
  std::string group_key;
};

mosquitto_plugin_id_t* g_id = nullptr;  // mosquitto's plugin API has no other place for it
Config g_config;

std::string B64Decode(const std::string& in) {
  std::string out(in.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return {};
  size_t pad = 0;
  if (!in.empty() && in.back() == '=') pad++;
  if (in.size() > 1 && in[in.size() - 2] == '=') pad++;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string B64Encode(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string Hmac(const std::string& key, const std::string& msg) {
  unsigned char mac[32];
  unsigned int len = sizeof mac;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

std::string Encode(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string Decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

int Deny(const char* client_id, const char* why) {
  mosquitto_log_printf(MOSQ_LOG_NOTICE, "azure-auth: deny %s: %s", client_id ? client_id : "?", why);
  return MOSQ_ERR_AUTH;
}

int OnBasicAuth(int, void* event_data, void*) {
  auto* ed = static_cast<mosquitto_evt_basic_auth*>(event_data);
  const char* id = mosquitto_client_id(ed->client);
  if (id == nullptr || ed->username == nullptr || ed->password == nullptr) return Deny(id, "missing credentials");
  const std::string client_id = id;
  if (ed->username != g_config.hostname + "/" + client_id + "/?api-version=2021-04-12") {
    return Deny(id, "bad username");
  }
  std::string token = ed->password;
  const std::string prefix = "SharedAccessSignature ";
  if (token.rfind(prefix, 0) != 0) return Deny(id, "password is not a SAS token");
  std::map<std::string, std::string> fields;
  size_t pos = prefix.size();
  while (pos < token.size()) {
    size_t amp = token.find('&', pos);
    if (amp == std::string::npos) amp = token.size();
    std::string kv = token.substr(pos, amp - pos);
    size_t eq = kv.find('=');
    if (eq == std::string::npos) return Deny(id, "malformed SAS field");
    fields[kv.substr(0, eq)] = kv.substr(eq + 1);
    pos = amp + 1;
  }
  if (fields.size() != 3 || !fields.count("sr") || !fields.count("sig") || !fields.count("se")) {
    return Deny(id, "SAS needs exactly sr, sig, se");
  }
  const std::string sr = Encode(g_config.hostname + "/devices/" + client_id);
  if (fields["sr"] != sr) return Deny(id, "wrong sr");
  if (std::stoll(fields["se"]) <= static_cast<long long>(time(nullptr))) return Deny(id, "token expired");
  const std::string device_key = B64Encode(Hmac(B64Decode(g_config.group_key), client_id));
  const std::string expected = B64Encode(Hmac(B64Decode(device_key), sr + "\n" + fields["se"]));
  if (Decode(fields["sig"]) != expected) return Deny(id, "bad signature");
  mosquitto_log_printf(MOSQ_LOG_NOTICE, "azure-auth: accept %s se=%s", id, fields["se"].c_str());
  return MOSQ_ERR_SUCCESS;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mosquitto_plugin_version(int, const int*) { return 5; }

__attribute__((visibility("default"))) int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void**, struct mosquitto_opt* options,
                          int option_count) {
  g_id = identifier;
  for (int i = 0; i < option_count; ++i) {
    if (std::strcmp(options[i].key, "hostname") == 0) g_config.hostname = options[i].value;
    if (std::strcmp(options[i].key, "group_key") == 0) g_config.group_key = options[i].value;
  }
  return mosquitto_callback_register(g_id, MOSQ_EVT_BASIC_AUTH, OnBasicAuth, nullptr, nullptr);
}

__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(void*, struct mosquitto_opt*, int) {
  return mosquitto_callback_unregister(g_id, MOSQ_EVT_BASIC_AUTH, OnBasicAuth, nullptr);
}
}
