// Device messages (DESIGN.md "Topics and payloads"): msgpack maps with short string keys and
// `v: 1`. Binary fields (DER, hashes, signatures, chunk data) are msgpack bin. Unknown keys are
// ignored so either side can add optional keys later. Decoders never throw: a missing or
// wrong-typed required key is kInvalidArgument naming the key; a payload above the kind's limit is
// kResourceExhausted; `v` other than 1 is kInvalidArgument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "edgetrust/common/result.h"

namespace edgetrust::protocol {

inline constexpr int kProtocolVersion = 1;

// Payload limits, checked before anything is parsed.
inline constexpr size_t kMaxEnrollPayloadBytes = 64 * 1024;   // enroll/cert req and res
inline constexpr size_t kMaxSmallPayloadBytes = 8 * 1024;     // state, ota offer/get/status, lifecycle
inline constexpr size_t kMaxOtaChunkDataBytes = 256 * 1024;   // `data` of one chunk
inline constexpr size_t kMaxOtaChunkPayloadBytes = kMaxOtaChunkDataBytes + 1024;

// Wire error codes (`err` of a response). The text in `msg` is for humans; devices act on `err`.
inline constexpr std::string_view kErrBadRequest = "bad_request";            // undecodable or missing keys
inline constexpr std::string_view kErrCsrInvalid = "csr_invalid";            // CSR does not parse / bad signature
inline constexpr std::string_view kErrCsrMismatch = "csr_mismatch";          // CSR subject is not the device id
inline constexpr std::string_view kErrBirthMismatch = "birth_mismatch";      // `birth` is not the connection's cert
inline constexpr std::string_view kErrUnknownManufacturer = "unknown_manufacturer";
inline constexpr std::string_view kErrNotAllowlisted = "not_allowlisted";    // allowlist mode, no manifest row
inline constexpr std::string_view kErrClaimInvalid = "claim_invalid";        // claim mode, wrong or missing code
inline constexpr std::string_view kErrStateForbidden = "state_forbidden";    // device state forbids it
inline constexpr std::string_view kErrNoGroup = "no_group";                  // no policy group matches
inline constexpr std::string_view kErrRateLimited = "rate_limited";
inline constexpr std::string_view kErrInternal = "internal";

// et/{id}/enroll/req, and et/{id}/cert/req for renewal (same shape; `birth` then carries the
// certificate the device connected with, i.e. its operational certificate).
struct EnrollRequest {
  std::string rid;  // request id chosen by the device, echoed in the response (required)
  Bytes csr;        // PKCS#10 DER (required)
  Bytes birth;      // DER of the certificate the device is connected with (required)
  std::string fw;     // firmware version (optional, empty if absent)
  std::string model;  // (optional, empty if absent)
  std::optional<std::string> claim;
};
using CertRequest = EnrollRequest;

// et/{id}/enroll/res and et/{id}/cert/res. ok=true requires `cert`; ok=false requires `err`.
struct EnrollResponse {
  std::string rid;
  bool ok = false;
  std::string err;  // one of the kErr… codes when !ok
  std::string msg;
  Bytes cert;                // operational certificate DER
  std::vector<Bytes> chain;  // issuing chain DER, leaf's issuer first
  std::string site;
  Bytes lifecycle_ca;  // DER of the certificate whose key signs lifecycle commands
};
using CertResponse = EnrollResponse;

struct OtaProgress {
  std::string image;
  uint32_t next = 0;  // next chunk index the device needs
};

// et/{id}/state, sent by the device on every connect.
struct StateMessage {
  std::string fw;     // required
  std::string model;  // required
  std::optional<OtaProgress> ota;
};

// et/{id}/ota/offer (retained).
struct OtaOffer {
  std::string image;    // image id
  std::string version;  // firmware version it installs
  uint64_t size = 0;    // image bytes
  uint32_t chunk = 0;   // chunk size in bytes, 1..kMaxOtaChunkDataBytes
  Bytes sha256;         // 32 bytes, of the whole image
  Bytes sig;            // signature over the manifest (pki defines the signed bytes)
  std::string key;      // signing key id
};

// et/{id}/ota/get: chunks [first, first + count).
struct OtaGet {
  std::string image;
  uint32_t first = 0;
  uint32_t count = 0;  // >= 1
};

// et/{id}/ota/chunk.
struct OtaChunk {
  std::string image;
  uint32_t i = 0;
  Bytes data;
};

enum class OtaState : uint8_t { kDownloading, kVerifying, kInstalled, kFailed, kRejected };
std::string_view OtaStateName(OtaState state);
std::optional<OtaState> ParseOtaState(std::string_view name);

// et/{id}/ota/status.
struct OtaStatus {
  std::string image;
  OtaState state = OtaState::kDownloading;
  uint32_t progress = 0;  // percent, 0..100
  std::string err;        // optional
};

enum class LifecycleActionKind : uint8_t { kWipe, kReenroll, kRenew };
std::string_view LifecycleActionKindName(LifecycleActionKind action);
std::optional<LifecycleActionKind> ParseLifecycleActionKind(std::string_view name);

// et/{id}/lifecycle, signed by the site key. Devices check the signature, that `ts` is recent and
// that `nonce` was not seen before.
struct LifecycleCommand {
  LifecycleActionKind action = LifecycleActionKind::kRenew;
  Bytes nonce;     // 8..64 random bytes
  int64_t ts = 0;  // unix seconds
  Bytes sig;       // over LifecycleSigningBytes
};

// The canonical byte string signed and verified for a lifecycle command. It binds the target
// device id (not carried in the message: the device knows its own) so that a command signed for one
// device cannot be replayed to another. Layout: "edgetrust-lifecycle-v1", then device id, action
// name and nonce each as u32 big-endian length + bytes, then ts as i64 big-endian.
Bytes LifecycleSigningBytes(std::string_view device_id, const LifecycleCommand& cmd);

Bytes EncodeEnrollRequest(const EnrollRequest& m);
Result<EnrollRequest> DecodeEnrollRequest(ByteView payload);
Bytes EncodeEnrollResponse(const EnrollResponse& m);
Result<EnrollResponse> DecodeEnrollResponse(ByteView payload);
Bytes EncodeStateMessage(const StateMessage& m);
Result<StateMessage> DecodeStateMessage(ByteView payload);
Bytes EncodeOtaOffer(const OtaOffer& m);
Result<OtaOffer> DecodeOtaOffer(ByteView payload);
Bytes EncodeOtaGet(const OtaGet& m);
Result<OtaGet> DecodeOtaGet(ByteView payload);
Bytes EncodeOtaChunk(const OtaChunk& m);
Result<OtaChunk> DecodeOtaChunk(ByteView payload);
Bytes EncodeOtaStatus(const OtaStatus& m);
Result<OtaStatus> DecodeOtaStatus(ByteView payload);
Bytes EncodeLifecycleCommand(const LifecycleCommand& m);
Result<LifecycleCommand> DecodeLifecycleCommand(ByteView payload);

// {v:1, rid, ok:false, err, msg}: the reply to any request that fails, decodable as EnrollResponse.
Bytes EncodeErrorResponse(std::string_view rid, std::string_view err, std::string_view msg);

// Best effort: the `rid` string of a request even when the rest does not decode, so the error
// response can still name it. Empty when there is none.
std::string PeekRequestId(ByteView payload);

}  // namespace edgetrust::protocol
