// The `aws-iot` upstream kind: AWS IoT Core over MQTT with mutual TLS to the account endpoint
// (libmosquitto sends the endpoint host as SNI, which AWS needs to pick the account's
// certificate). Gateway identity only: the site's thing certificate, a pool of `connections`
// with client ids <client_id>-<k>. AWS's documented limits are enforced here, before sending,
// because AWS answers a violation by dropping the whole connection.
#include "broker_upstream.h"

namespace edgetrust::forwarding::internal {

// https://docs.aws.amazon.com/general/latest/gr/iot-core.html (message broker quotas)
inline constexpr size_t kAwsMaxPayloadBytes = 128 * 1024;
inline constexpr int kAwsMaxTopicSlashes = 7;
inline constexpr size_t kAwsMaxTopicBytes = 256;

Result<std::unique_ptr<UpstreamConnection>> MakeAwsIotUpstream(const policies::Upstream& config,
                                                               std::string_view site,
                                                               uv_loop_t* loop,
                                                               UpstreamEvents events,
                                                               UpstreamCounters* counters,
                                                               const UpstreamTuning& tuning) {
  if (config.identity != policies::UpstreamIdentity::kGateway) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "upstream '" + config.name +
                         "': aws-iot supports identity gateway only (per-device things are not "
                         "implemented)");
  }
  if (config.cert.empty() || config.key.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "upstream '" + config.name + "': aws-iot needs cert and key (mutual TLS)");
  }
  policies::Upstream c = config;
  c.tls = true;
  c.username.clear();
  c.password_file.clear();
  BrokerLimits limits;
  limits.kind = "aws-iot";
  limits.max_qos = 1;
  limits.max_payload_bytes = kAwsMaxPayloadBytes;
  limits.max_topic_slashes = kAwsMaxTopicSlashes;
  limits.max_topic_bytes = kAwsMaxTopicBytes;
  limits.publishes_per_second = tuning.aws_publishes_per_second;
  ET_ASSIGN_OR_RETURN(auto up, BrokerUpstream::Create(c, site, loop, std::move(events), counters,
                                                       tuning, std::move(limits)));
  return std::unique_ptr<UpstreamConnection>(std::move(up));
}

}  // namespace edgetrust::forwarding::internal
