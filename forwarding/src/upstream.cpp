#include "edgetrust/forwarding/upstream.h"

#include "broker_upstream.h"

namespace edgetrust::forwarding {
namespace internal {
Result<std::unique_ptr<UpstreamConnection>> MakeAwsIotUpstream(const policies::Upstream& config,
                                                               std::string_view site,
                                                               uv_loop_t* loop,
                                                               UpstreamEvents events,
                                                               UpstreamCounters* counters,
                                                               const UpstreamTuning& tuning);
Result<std::unique_ptr<UpstreamConnection>> MakeAzureIotUpstream(const policies::Upstream& config,
                                                                 std::string_view site,
                                                                 uv_loop_t* loop,
                                                                 UpstreamEvents events,
                                                                 UpstreamCounters* counters,
                                                                 const UpstreamTuning& tuning);
}  // namespace internal

Result<std::unique_ptr<UpstreamConnection>> MakeUpstream(const policies::Upstream& config,
                                                         std::string_view site, uv_loop_t* loop,
                                                         UpstreamEvents events,
                                                         UpstreamCounters* counters,
                                                         const UpstreamTuning& tuning) {
  if (counters == nullptr) return MakeError(ErrorCode::kInvalidArgument, "counters are required");
  switch (config.kind) {
    case policies::UpstreamKind::kMqtt: {
      ET_ASSIGN_OR_RETURN(auto up, internal::BrokerUpstream::Create(config, site, loop,
                                                                    std::move(events), counters,
                                                                    tuning, {}));
      return std::unique_ptr<UpstreamConnection>(std::move(up));
    }
    case policies::UpstreamKind::kAwsIot:
      return internal::MakeAwsIotUpstream(config, site, loop, std::move(events), counters, tuning);
    case policies::UpstreamKind::kAzureIotHub:
      return internal::MakeAzureIotUpstream(config, site, loop, std::move(events), counters,
                                            tuning);
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown upstream kind");
}

}  // namespace edgetrust::forwarding
