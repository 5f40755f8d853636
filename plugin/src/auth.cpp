// MOSQ_EVT_BASIC_AUTH: Mosquitto calls it for every CONNECT on a listener without
// use_identity_as_username, with or without a username (2.0.11 mosquitto_unpwd_check). The
// username and password are ignored: the certificate is the identity.
#include <mosquitto.h>
#include <mosquitto_broker.h>

#include "broker_log.h"
#include "events.h"
#include "x509_der.h"

namespace edgetrust::plugin::internal {
namespace {

int Refuse(PluginState& state, std::string_view client_id, ByteView fingerprint,
           const Decision& decision) {
  state.counters.CountDenied(decision.reason);
  std::string line = "denied client '" + Printable(client_id) + "' (cert " +
                     (fingerprint.empty() ? std::string("none") : ShortFingerprint(fingerprint)) +
                     "): " + std::string(DenyReasonName(decision.reason));
  if (!decision.detail.empty()) line += " (" + decision.detail + ")";
  if (decision.reason == DenyReason::kStoreUnavailable) {
    LogError(line);
  } else {
    LogNotice(line);
  }
  return MOSQ_ERR_AUTH;
}

}  // namespace

int HandleBasicAuth(PluginState& state, void* event_data) {
  auto* ev = static_cast<mosquitto_evt_basic_auth*>(event_data);
  const char* id = mosquitto_client_id(ev->client);
  std::string_view client_id = id ? id : "";
  // A handle the broker reuses must not inherit an earlier session's role.
  state.clients.Remove(ev->client);

  auto der = ClientCertificateDer(ev->client);
  if (!der.ok()) {
    return Refuse(state, client_id, {}, Decision{DenyReason::kBadCertificate, {}, der.error().message});
  }
  if (!der->has_value()) {
    return Refuse(state, client_id, {}, state.decider.Decide(client_id, nullptr, UnixNow()));
  }
  auto cert = pki::ParseCertificateDer(**der);
  if (!cert.ok()) {
    return Refuse(state, client_id, {},
                  Decision{DenyReason::kBadCertificate, {}, cert.error().message});
  }
  Decision decision = state.decider.Decide(client_id, &*cert, UnixNow());
  if (!decision.allowed()) return Refuse(state, client_id, cert->fingerprint, decision);

  // The CN becomes the username: reload's allow_anonymous sweep keeps the session, and the
  // broker's own log lines name the device.
  if (int rc = mosquitto_set_username(ev->client, cert->subject.cn.c_str()); rc != MOSQ_ERR_SUCCESS) {
    return Refuse(state, client_id, cert->fingerprint,
                  Decision{DenyReason::kStoreUnavailable, {}, "cannot set username"});
  }
  ClientInfo info;
  info.client_id = std::string(client_id);
  info.role = decision.role;
  info.fingerprint_hex = HexEncode(cert->fingerprint);
  info.cert = std::move(cert).value();
  LogInfo("allowed client '" + info.client_id + "' (cert " +
          info.fingerprint_hex.substr(0, 16) + ") as " + std::string(protocol::RoleName(info.role)));
  state.clients.Add(ev->client, std::move(info));
  ++state.counters.allowed;
  return MOSQ_ERR_SUCCESS;
}

}  // namespace edgetrust::plugin::internal
