#include "edgetrust/device/options.h"

#include <charconv>
#include <limits>
#include <map>
#include <set>

namespace edgetrust::device {
namespace {

Error Bad(std::string message) { return MakeError(ErrorCode::kInvalidArgument, std::move(message)); }

Result<int64_t> ParseInt(const std::string& flag, const std::string& text, int64_t min,
                         int64_t max) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max)
    return Bad("--" + flag + ": expected an integer in [" + std::to_string(min) + ", " +
               std::to_string(max) + "], got '" + text + "'");
  return value;
}

const std::set<std::string, std::less<>> kValueFlags = {
    "broker", "ca",    "birth-cert", "birth-key", "state",       "interval",   "fw",
    "model",  "claim", "count",      "simulate",  "factory-out", "duration",   "stagger-ms",
    "response-timeout", "renew-after"};
const std::set<std::string, std::less<>> kBoolFlags = {"exit-after-enroll", "quiet"};

}  // namespace

Result<BrokerAddress> ParseBrokerUrl(const std::string& url) {
  constexpr std::string_view kScheme = "mqtts://";
  if (!std::string_view(url).starts_with(kScheme))
    return Bad("--broker: expected mqtts://HOST:PORT, got '" + url + "'");
  std::string rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  BrokerAddress address;
  std::string port_text;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string::npos) return Bad("--broker: unterminated '[' in '" + url + "'");
    address.host = rest.substr(1, close - 1);
    std::string after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Bad("--broker: unexpected text after ']' in '" + url + "'");
      port_text = after.substr(1);
      if (port_text.empty()) return Bad("--broker: empty port in '" + url + "'");
    }
  } else {
    auto colon = rest.rfind(':');
    if (colon != std::string::npos) {
      port_text = rest.substr(colon + 1);
      rest.resize(colon);
      if (port_text.empty()) return Bad("--broker: empty port in '" + url + "'");
    }
    address.host = rest;
  }
  if (address.host.empty()) return Bad("--broker: no host in '" + url + "'");
  if (address.host.find_first_of("/?#@ ") != std::string::npos)
    return Bad("--broker: unexpected character in host '" + address.host + "'");
  if (!port_text.empty()) {
    ET_ASSIGN_OR_RETURN(int64_t port, ParseInt("broker", port_text, 1, 65535));
    address.port = static_cast<int>(port);
  }
  return address;
}

Result<Options> ParseOptions(const std::vector<std::string>& args) {
  std::map<std::string, std::string, std::less<>> values;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!arg.starts_with("--") || arg.size() == 2)
      return Bad("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (kBoolFlags.contains(name)) {
      if (inline_value) return Bad("--" + name + " takes no value");
      values[name] = "";
    } else if (kValueFlags.contains(name)) {
      if (inline_value) {
        values[name] = *inline_value;
      } else {
        if (i + 1 >= args.size()) return Bad("--" + name + " needs a value");
        values[name] = args[++i];
      }
      if (values[name].empty()) return Bad("--" + name + " needs a non-empty value");
    } else {
      return Bad("unknown option --" + name);
    }
  }

  Options options;
  auto has = [&](std::string_view name) { return values.find(name) != values.end(); };
  auto get = [&](std::string_view name) { return values.find(name)->second; };

  if (!has("broker")) return Bad("--broker is required");
  ET_ASSIGN_OR_RETURN(options.broker, ParseBrokerUrl(get("broker")));
  if (!has("ca")) return Bad("--ca is required");
  options.ca_file = get("ca");

  if (has("simulate")) {
    ET_ASSIGN_OR_RETURN(int64_t n, ParseInt("simulate", get("simulate"), 1, 100000));
    options.simulate = static_cast<int>(n);
    if (!has("factory-out")) return Bad("--simulate needs --factory-out DIR");
    if (has("birth-cert") || has("birth-key"))
      return Bad("--simulate takes birth certificates from --factory-out, not --birth-cert/--birth-key");
    options.factory_out = get("factory-out");
    if (has("state")) options.state_dir = get("state");
  } else {
    if (has("factory-out")) return Bad("--factory-out needs --simulate N");
    if (has("duration") || has("stagger-ms") || has("quiet"))
      return Bad("--duration, --stagger-ms and --quiet need --simulate N");
    if (!has("birth-cert")) return Bad("--birth-cert is required");
    if (!has("birth-key")) return Bad("--birth-key is required");
    if (!has("state")) return Bad("--state is required");
    options.birth_cert_file = get("birth-cert");
    options.birth_key_file = get("birth-key");
    options.state_dir = get("state");
  }

  if (has("interval")) {
    ET_ASSIGN_OR_RETURN(int64_t v, ParseInt("interval", get("interval"), 0, 86400));
    options.interval_seconds = static_cast<int>(v);
  }
  if (has("count")) {
    ET_ASSIGN_OR_RETURN(int64_t v, ParseInt("count", get("count"), 0,
                                             std::numeric_limits<int32_t>::max()));
    options.count = v;
    if (v > 0 && options.interval_seconds == 0)
      return Bad("--count needs telemetry: --interval must be above 0");
  }
  if (has("duration")) {
    ET_ASSIGN_OR_RETURN(int64_t v, ParseInt("duration", get("duration"), 1, 30 * 86400));
    options.duration_seconds = static_cast<int>(v);
  }
  if (has("stagger-ms")) {
    ET_ASSIGN_OR_RETURN(int64_t v, ParseInt("stagger-ms", get("stagger-ms"), 0, 60000));
    options.stagger_ms = static_cast<int>(v);
  }
  if (has("response-timeout")) {
    ET_ASSIGN_OR_RETURN(int64_t v, ParseInt("response-timeout", get("response-timeout"), 1, 3600));
    options.response_timeout_seconds = static_cast<int>(v);
  }
  if (has("renew-after")) {
    ET_ASSIGN_OR_RETURN(int64_t v, ParseInt("renew-after", get("renew-after"), 0, 30 * 86400));
    options.renew_after_seconds = static_cast<int>(v);
  }
  if (has("fw")) options.fw = get("fw");
  if (has("model")) options.model = get("model");
  if (has("claim")) options.claim = get("claim");
  options.exit_after_enroll = has("exit-after-enroll");
  options.quiet = has("quiet");
  if (options.exit_after_enroll && options.count)
    return Bad("--exit-after-enroll and --count exclude each other");
  return options;
}

std::string Usage() {
  return R"(usage:
  edgetrust-device --broker mqtts://HOST:PORT --ca FILE --birth-cert FILE --birth-key FILE
                   --state DIR [options]
  edgetrust-device --broker mqtts://HOST:PORT --ca FILE --simulate N --factory-out DIR
                   [--state DIR] [--duration S] [--stagger-ms MS] [--quiet] [options]

The reference edgetrust device agent. Without an operational certificate in --state it connects
with its birth certificate, enrolls (new P-256 key + CSR), stores the operational identity
atomically and reconnects with it; then it publishes its state on every connect, telemetry every
--interval seconds, and renews its certificate before it expires.

options:
  --interval S           telemetry period in seconds (default 10, 0 = none)
  --fw VERSION           firmware version reported at enrollment and in state (default 1.0.0)
  --model M              model (default: OU of the birth certificate)
  --claim CODE           claim code sent with the enrollment request
  --count N              exit 0 after N telemetry messages
  --exit-after-enroll    exit once enrolled (simulation: once all N are; exit 0 only if all did)
  --response-timeout S   re-send an unanswered enrollment/renewal request after S seconds (default 5)
  --renew-after S        renew once S seconds after the first operational connect (demos, tests)
  --simulate N           run N devices from --factory-out DIR/<id>/birth.pem|key on one loop;
                         state in --state DIR/<id> (default DIR/<id>/state of the factory output)
  --duration S           simulation: stop after S seconds (exit 1 with --exit-after-enroll if not
                         all enrolled)
  --stagger-ms MS        simulation: delay between first connects (default 20)
  --quiet                simulation: only the once-a-second progress line
)";
}

}  // namespace edgetrust::device
