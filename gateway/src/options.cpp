#include "edgetrust/gateway/options.h"

#include <charconv>
#include <string_view>

namespace edgetrust::gateway {
namespace {

Result<int> ParseInt(std::string_view flag, std::string_view text, int lo, int hi) {
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < lo || v > hi) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string(flag) + ": expected an integer in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "], got '" + std::string(text) + "'");
  }
  return v;
}

// mqtts://HOST[:PORT]; the gateway, like every client of the site broker, speaks TLS only.
Status ParseBroker(std::string_view url, GatewayOptions& o) {
  constexpr std::string_view kScheme = "mqtts://";
  if (url.substr(0, kScheme.size()) != kScheme)
    return MakeError(ErrorCode::kInvalidArgument, "--broker: expected mqtts://HOST[:PORT]");
  std::string_view rest = url.substr(kScheme.size());
  std::string_view host = rest;
  std::string_view port;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos)
      return MakeError(ErrorCode::kInvalidArgument, "--broker: unterminated [IPv6]");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':')
        return MakeError(ErrorCode::kInvalidArgument, "--broker: junk after ]");
      port = rest.substr(close + 2);
    }
  } else if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return MakeError(ErrorCode::kInvalidArgument, "--broker: no host");
  o.broker_host = std::string(host);
  if (!port.empty()) {
    ET_ASSIGN_OR_RETURN(o.broker_port, ParseInt("--broker port", port, 1, 65535));
  }
  return OkStatus();
}

}  // namespace

std::string GatewayUsage() {
  return "usage: edgetrust-gateway --policy FILE --store DIR --broker mqtts://HOST[:PORT]\n"
         "                         --ca FILE --cert FILE --key FILE\n"
         "                         [--site-ca FILE] [--site-ca-key FILE] [--cloud-dir DIR]\n"
         "                         [--log-level LEVEL] [--rate N/SECONDS]\n"
         "\n"
         "Enrolls devices (et/{id}/enroll/req) and renews their certificates (et/{id}/cert/req)\n"
         "for the site broker, records what devices report (et/{id}/state), and forwards their\n"
         "data (et/{id}/up/#) to the upstream their group's route names.\n"
         "\n"
         "  --policy FILE       site policy (YAML); SIGHUP reloads it, a bad one is refused and\n"
         "                      the running one kept\n"
         "  --store DIR         the site's LMDB store (the gateway is its main writer)\n"
         "  --broker URL        mqtts://HOST[:PORT] (default port 8883)\n"
         "  --ca FILE           CA file that verifies the broker\n"
         "  --cert/--key FILE   the gateway principal's certificate and key (its CN is the\n"
         "                      client id, e.g. edgetrust-gateway)\n"
         "  --site-ca FILE      site CA certificate that signs operational certificates\n"
         "                      (default: the policy's trust.site_ca)\n"
         "  --site-ca-key FILE  its private key (default: site-ca.key beside the policy file)\n"
         "  --cloud-dir DIR     per-device cloud certificates it issues for aws-iot upstreams\n"
         "                      with identity device (default: cloud/ beside the store dir)\n"
         "  --log-level LEVEL   debug | info | warn | error (default info)\n"
         "  --rate N/SECONDS    enrollment/renewal requests allowed per device (default 5/10)\n"
         "  --request-queue N   enrollment/renewal requests that may wait, about 1.2 KiB each;\n"
         "                      beyond it one is dropped and its device asks again after its\n"
         "                      response timeout (default 2048, at most 10000)\n"
         "\n"
         "Logs go to stdout, one line per event. SIGTERM finishes in-flight work and exits 0.\n";
}

Result<GatewayOptions> ParseGatewayOptions(const std::vector<std::string>& args) {
  GatewayOptions o;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    auto value = [&]() -> Result<std::string> {
      if (i + 1 >= args.size()) return MakeError(ErrorCode::kInvalidArgument, a + ": needs a value");
      return args[++i];
    };
    if (a == "--policy") {
      ET_ASSIGN_OR_RETURN(o.policy_file, value());
    } else if (a == "--store") {
      ET_ASSIGN_OR_RETURN(o.store_dir, value());
    } else if (a == "--broker") {
      ET_ASSIGN_OR_RETURN(std::string url, value());
      ET_RETURN_IF_ERROR(ParseBroker(url, o));
    } else if (a == "--ca") {
      ET_ASSIGN_OR_RETURN(o.ca_file, value());
    } else if (a == "--cert") {
      ET_ASSIGN_OR_RETURN(o.cert_file, value());
    } else if (a == "--key") {
      ET_ASSIGN_OR_RETURN(o.key_file, value());
    } else if (a == "--site-ca") {
      ET_ASSIGN_OR_RETURN(o.site_ca_file, value());
    } else if (a == "--site-ca-key") {
      ET_ASSIGN_OR_RETURN(o.site_ca_key_file, value());
    } else if (a == "--cloud-dir") {
      ET_ASSIGN_OR_RETURN(o.cloud_dir, value());
    } else if (a == "--log-level") {
      ET_ASSIGN_OR_RETURN(std::string level, value());
      if (level == "debug") o.log_level = LogLevel::kDebug;
      else if (level == "info") o.log_level = LogLevel::kInfo;
      else if (level == "warn") o.log_level = LogLevel::kWarn;
      else if (level == "error") o.log_level = LogLevel::kError;
      else return MakeError(ErrorCode::kInvalidArgument, "--log-level: debug|info|warn|error");
    } else if (a == "--rate") {
      ET_ASSIGN_OR_RETURN(std::string rate, value());
      size_t slash = rate.find('/');
      if (slash == std::string::npos)
        return MakeError(ErrorCode::kInvalidArgument, "--rate: expected N/SECONDS");
      ET_ASSIGN_OR_RETURN(o.rate_burst, ParseInt("--rate", rate.substr(0, slash), 1, 1000000));
      ET_ASSIGN_OR_RETURN(o.rate_window_seconds,
                          ParseInt("--rate", rate.substr(slash + 1), 1, 86400));
    } else if (a == "--request-queue") {
      ET_ASSIGN_OR_RETURN(std::string n, value());
      ET_ASSIGN_OR_RETURN(o.request_queue, ParseInt("--request-queue", n, 1, 10000));
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "unknown argument '" + a + "'");
    }
  }
  for (auto [flag, v] : {std::pair{"--policy", &o.policy_file}, {"--store", &o.store_dir},
                         {"--broker", &o.broker_host}, {"--ca", &o.ca_file},
                         {"--cert", &o.cert_file}, {"--key", &o.key_file}}) {
    if (v->empty()) return MakeError(ErrorCode::kInvalidArgument, std::string(flag) + " is required");
  }
  if (o.cloud_dir.empty()) {
    std::string store = o.store_dir;
    while (store.size() > 1 && store.back() == '/') store.pop_back();
    const size_t slash = store.rfind('/');
    o.cloud_dir = slash == std::string::npos ? "cloud"
                  : slash == 0              ? "/cloud"
                                            : store.substr(0, slash) + "/cloud";
  }
  return o;
}

}  // namespace edgetrust::gateway
