// edgetrust admin status | admin reload: the gateway's admin API ({prefix}/_admin/v1/req → res)
// over the site broker, as the site's admin principal (admin.pem; the plugin wants the client id
// to be its CN). One request with a fresh correlationData, the answer that carries it back.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "edgetrust/pki/certificate.h"
#include "edgetrust/protocol/topics.h"
#include "files.h"

namespace edgetrust::tools {
namespace {

using Json = nlohmann::json;

// What `--dir` gives: where and as whom to ask.
struct AdminSite {
  std::string ca, cert, key;
  std::string client_id;  // the admin certificate's CN
  std::string prefix = "et";
  int port = 0;
};

// The port of the first `listener` in the site's mosquitto.conf (what `site init` wrote).
std::optional<int> ListenerPort(const std::string& conf_path) {
  std::ifstream in(conf_path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    int port = 0;
    if (words >> key && key == "listener" && words >> port && port > 0 && port < 65536) return port;
  }
  return std::nullopt;
}

Result<AdminSite> ReadSite(const ParsedArgs& args) {
  const std::string dir = AbsolutePath(args.Get("dir"));
  AdminSite s{.ca = dir + "/site-ca.pem", .cert = dir + "/admin.pem", .key = dir + "/admin.key"};
  for (const std::string* f : {&s.ca, &s.cert, &s.key}) {
    if (!FileExists(*f)) {
      return MakeError(ErrorCode::kNotFound, *f + ": missing (a site made by edgetrust site init has it)");
    }
  }
  auto cert = pki::LoadCertificateFile(s.cert);
  if (!cert.ok()) return MakeError(cert.error().code, s.cert + ": " + cert.error().message);
  s.client_id = cert->subject.cn;
  // Only topic_prefix is read, and leniently: `admin reload` must reach the gateway even when
  // the policy on disk is the broken one it is about to refuse.
  try {
    YAML::Node policy = YAML::LoadFile(dir + "/policy.yaml");
    if (policy.IsMap() && policy["topic_prefix"] && policy["topic_prefix"].IsScalar()) {
      s.prefix = policy["topic_prefix"].Scalar();
    }
  } catch (const YAML::Exception&) {
  }
  if (args.Has("port")) {
    s.port = static_cast<int>(args.GetInt("port", 0));
  } else if (auto port = ListenerPort(dir + "/mosquitto.conf")) {
    s.port = *port;
  } else {
    return MakeError(ErrorCode::kNotFound,
                     dir + "/mosquitto.conf: no listener port in it; give --port");
  }
  return s;
}

struct Exchange {
  std::string request_topic, response_topic, request, correlation;
  int connack = -1;         // the CONNACK's reason, once it came
  bool subscribed = false;  // the SUBACK came
  bool granted = false;     // and granted the response topic
  int puback = -1;          // the request's PUBACK reason, once it came
  std::optional<Json> answer;
};

// Whether a TCP connection to host:port opens within `timeout`.
Status TcpReachable(const std::string& host, int port, std::chrono::seconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    return MakeError(ErrorCode::kUnavailable, gai_strerror(rc));
  }
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int err = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
      const int ready = poll(&p, 1, static_cast<int>(timeout.count() * 1000));
      socklen_t len = sizeof err;
      if (ready == 0) {
        err = ETIMEDOUT;
      } else if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
      }
    }
    close(fd);
    if (err == 0) {
      freeaddrinfo(found);
      return OkStatus();
    }
    why = std::strerror(err);
  }
  freeaddrinfo(found);
  return MakeError(ErrorCode::kUnavailable, why);
}

std::string Mosq(int rc) { return rc == MOSQ_ERR_ERRNO ? std::strerror(errno) : mosquitto_strerror(rc); }

// A connection that failed: TLS failures are the usual mistake (wrong broker, wrong site).
std::string Failure(int rc) {
  if (rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_CONN_LOST) {
    return "the TLS connection failed (is this the site's broker, and does it trust this site's "
           "certificates?)";
  }
  return Mosq(rc);
}

// Sends one command and returns its entry of "responses".
Result<Json> Ask(const AdminSite& site, const std::string& host, std::chrono::seconds timeout,
                 const std::string& command) {
  std::random_device rd;
  Exchange x;
  x.correlation = "edgetrust-cli-" + std::to_string(rd()) + std::to_string(rd());
  x.request_topic = protocol::AdminRequestTopic(site.prefix);
  x.response_topic = protocol::AdminResponseTopic(site.prefix);
  x.request = Json{{"commands", Json::array({{{"command", command},
                                              {"correlationData", x.correlation}}})}}
                  .dump();

  if (int rc = mosquitto_lib_init(); rc != MOSQ_ERR_SUCCESS) {
    return MakeError(ErrorCode::kInternal, "libmosquitto: " + Mosq(rc));
  }
  struct Client {
    mosquitto* m;
    ~Client() {
      mosquitto_destroy(m);
      mosquitto_lib_cleanup();
    }
  } client{mosquitto_new(site.client_id.c_str(), true, &x)};
  if (client.m == nullptr) return MakeError(ErrorCode::kInternal, "mosquitto_new failed");
  mosquitto* m = client.m;
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  int rc = mosquitto_tls_set(m, site.ca.c_str(), nullptr, site.cert.c_str(), site.key.c_str(), nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return MakeError(ErrorCode::kInvalidArgument, "TLS files: " + Mosq(rc));
  mosquitto_connect_callback_set(m, [](mosquitto*, void* p, int reason) {
    static_cast<Exchange*>(p)->connack = reason;
  });
  mosquitto_subscribe_callback_set(m, [](mosquitto*, void* p, int, int count, const int* qos) {
    auto* x = static_cast<Exchange*>(p);
    x->subscribed = true;
    x->granted = count == 1 && qos[0] < 0x80;
  });
  mosquitto_publish_v5_callback_set(m, [](mosquitto*, void* p, int, int reason, const mosquitto_property*) {
    static_cast<Exchange*>(p)->puback = reason;
  });
  mosquitto_message_callback_set(m, [](mosquitto*, void* p, const mosquitto_message* msg) {
    auto* x = static_cast<Exchange*>(p);
    if (msg->topic == nullptr || x->response_topic != msg->topic || msg->payloadlen <= 0) return;
    Json j = Json::parse(static_cast<const char*>(msg->payload),
                         static_cast<const char*>(msg->payload) + msg->payloadlen, nullptr, false);
    if (j.is_discarded() || !j.contains("responses") || !j["responses"].is_array()) return;
    for (const Json& r : j["responses"]) {  // answers to other admins go by
      if (!r.is_object() || !r.contains("correlationData")) continue;
      const Json& c = r["correlationData"];
      if (c.is_string() && c.get_ref<const std::string&>() == x->correlation) x->answer = r;
    }
  });

  // libmosquitto's own connect has no timeout (and its asynchronous one retries a refused TLS
  // handshake for ever), so the TCP connect is tried here first, within --timeout.
  const std::string where = host + ":" + std::to_string(site.port);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (Status reachable = TcpReachable(host, site.port, timeout); !reachable.ok()) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot connect to the site broker at " + where + ": " + reachable.error().message);
  }
  rc = mosquitto_connect(m, host.c_str(), site.port, 30);
  if (rc != MOSQ_ERR_SUCCESS) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot connect to the site broker at " + where + ": " + Failure(rc));
  }
  bool subscribing = false, published = false;
  while (!x.answer) {
    if (std::chrono::steady_clock::now() >= deadline) {
      if (x.connack != 0) {
        return MakeError(ErrorCode::kUnavailable, "no CONNACK from the site broker at " + where +
                                                      " in " + std::to_string(timeout.count()) + " s");
      }
      return MakeError(ErrorCode::kUnavailable,
                       "no answer on " + x.response_topic + " in " + std::to_string(timeout.count()) +
                           " s: is edgetrust-gateway running and connected to this broker?");
    }
    rc = mosquitto_loop(m, 100, 1);
    // A refused CONNECT runs the callback, then the loop fails: the reason is the news.
    if (x.connack > 0) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "the site broker refused " + site.client_id + ": " +
                           mosquitto_reason_string(x.connack) +
                           " (is it an admin principal in policy.yaml?)");
    }
    if (rc != MOSQ_ERR_SUCCESS) {
      return MakeError(ErrorCode::kUnavailable, "site broker at " + where + ": " + Failure(rc));
    }
    if (x.connack == 0 && !subscribing) {
      rc = mosquitto_subscribe(m, nullptr, x.response_topic.c_str(), 1);
      if (rc != MOSQ_ERR_SUCCESS) return MakeError(ErrorCode::kUnavailable, "subscribe: " + Mosq(rc));
      subscribing = true;
    }
    if (x.subscribed && !x.granted) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "the site broker refused " + site.client_id + " the topic " + x.response_topic);
    }
    if (x.subscribed && !published) {
      rc = mosquitto_publish(m, nullptr, x.request_topic.c_str(), static_cast<int>(x.request.size()),
                             x.request.data(), 1, false);
      if (rc != MOSQ_ERR_SUCCESS) return MakeError(ErrorCode::kUnavailable, "publish: " + Mosq(rc));
      published = true;
    }
    if (x.puback >= 0x80) {
      return MakeError(ErrorCode::kPermissionDenied,
                       "the site broker refused " + site.client_id + " publishing on " +
                           x.request_topic + ": " + mosquitto_reason_string(x.puback));
    }
  }
  mosquitto_disconnect(m);
  if (x.answer->contains("error")) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the gateway refused " + command + ": " + x.answer->value("error", ""));
  }
  return x.answer->value("data", Json::object());
}

CommandOutcome RunAdmin(const ParsedArgs& args, const std::string& command,
                        const std::function<void(const Json&)>& print) {
  auto site = ReadSite(args);
  if (!site.ok()) return site.error();
  auto data = Ask(*site, args.Get("host", "127.0.0.1"), std::chrono::seconds(args.GetInt("timeout", 10)),
                  command);
  if (!data.ok()) return data.error();
  print(*data);
  return std::monostate{};
}

std::vector<OptionSpec> AdminOptions() {
  return {
      {.name = "dir", .value_name = "DIR", .help = "the site directory (site-ca.pem, admin.pem, admin.key, policy.yaml, mosquitto.conf)", .required = true},
      {.name = "host", .value_name = "HOST", .help = "the site broker (default 127.0.0.1; must be a name in its certificate)"},
      {.name = "port", .value_name = "PORT", .help = "its TLS port (default: the listener in DIR/mosquitto.conf)", .integer = IntRange{1, 65535}},
      {.name = "timeout", .value_name = "SECONDS", .help = "how long to wait for the answer (default 10)", .integer = IntRange{1, 3600}},
  };
}

}  // namespace

std::vector<CommandSpec> AdminCommands() {
  std::vector<CommandSpec> out;
  out.push_back(
      {.path = "admin status",
       .summary = "ask the running gateway for its status (admin API getStatus)",
       .description =
           "Connects to the site broker as the site's admin principal (admin.pem, client id = its CN) "
           "and asks the gateway for getStatus: the broker link, the routes, waiting enrollment "
           "requests, and per upstream whether it is connected, its counters since start and what "
           "waits in its outbox. Prints the answer as JSON. Another client connected with the same "
           "client id is disconnected by the broker.",
       .options = AdminOptions(),
       .run = [](const ParsedArgs& args) {
         return RunAdmin(args, "getStatus", [](const Json& data) { std::cout << data.dump(2) << "\n"; });
       }});
  out.push_back(
      {.path = "admin reload",
       .summary = "make the running gateway reload policy.yaml (admin API reloadPolicy)",
       .description =
           "Does what SIGHUP to the gateway does, over the admin API: the gateway reads its policy "
           "again; new messages follow the new routes at once. A policy that does not load is "
           "refused with its reason (exit 1) and the running one stays.",
       .options = AdminOptions(),
       .run = [](const ParsedArgs& args) {
         return RunAdmin(args, "reloadPolicy", [](const Json& data) {
           std::cout << "policy reloaded: " << data.value("groups", 0) << " group(s)";
           if (data.contains("routes") && data["routes"].is_object()) {
             for (const auto& [group, route] : data["routes"].items()) {
               std::cout << (route.is_string() && !route.get<std::string>().empty()
                                 ? "\n  " + group + " -> " + route.get<std::string>()
                                 : "\n  " + group + " (no route)");
             }
           }
           std::cout << "\n";
         });
       }});
  return out;
}

}  // namespace edgetrust::tools
