#include "edgetrust/protocol/messages.h"

#include <msgpack.hpp>

#include <array>
#include <limits>

namespace edgetrust::protocol {
namespace internal {
namespace {

// ---- encoding ----

// msgpack-c writes through any type with write(const char*, size_t); append straight into Bytes.
struct BytesSink {
  Bytes* out;
  void write(const char* data, size_t size) { out->insert(out->end(), data, data + size); }
};

class MapWriter {
 public:
  // `entries` excludes `v`, which is always written first.
  MapWriter(Bytes* out, uint32_t entries) : sink_{out}, packer_(sink_) {
    packer_.pack_map(entries + 1);
    Key("v");
    packer_.pack_uint32(kProtocolVersion);
  }

  void Str(std::string_view key, std::string_view value) {
    Key(key);
    PackStr(value);
  }
  void Bin(std::string_view key, ByteView value) {
    Key(key);
    PackBin(value);
  }
  void Uint(std::string_view key, uint64_t value) {
    Key(key);
    packer_.pack_uint64(value);
  }
  void Int(std::string_view key, int64_t value) {
    Key(key);
    packer_.pack_int64(value);
  }
  void Bool(std::string_view key, bool value) {
    Key(key);
    if (value) {
      packer_.pack_true();
    } else {
      packer_.pack_false();
    }
  }
  void BinArray(std::string_view key, const std::vector<Bytes>& values) {
    Key(key);
    packer_.pack_array(static_cast<uint32_t>(values.size()));
    for (const Bytes& b : values) PackBin(b);
  }
  // A nested map without `v`; the caller writes exactly `entries` key/value pairs after it.
  void NestedMap(std::string_view key, uint32_t entries) {
    Key(key);
    packer_.pack_map(entries);
  }

 private:
  void Key(std::string_view key) { PackStr(key); }
  void PackStr(std::string_view s) {
    packer_.pack_str(static_cast<uint32_t>(s.size()));
    packer_.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  void PackBin(ByteView b) {
    packer_.pack_bin(static_cast<uint32_t>(b.size()));
    packer_.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
  }

  BytesSink sink_;
  msgpack::packer<BytesSink> packer_;
};

// ---- decoding ----

Error Invalid(std::string_view what, std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::string(what) + ": " + message);
}

// A decoded msgpack map. Lookup is linear: our maps have a handful of keys.
class MapView {
 public:
  MapView(const msgpack::object& map, std::string_view what, std::string key_prefix = {})
      : map_(map.via.map), what_(what), key_prefix_(std::move(key_prefix)) {}

  // Unknown keys are ignored, but a known key given twice is ambiguous and refused.
  Status Find(std::string_view key, const msgpack::object** found) const {
    *found = nullptr;
    for (uint32_t i = 0; i < map_.size; ++i) {
      const msgpack::object& k = map_.ptr[i].key;
      if (k.type != msgpack::type::STR) continue;
      if (std::string_view(k.via.str.ptr, k.via.str.size) != key) continue;
      if (*found != nullptr) return Invalid(what_, "duplicate key '" + Name(key) + "'");
      *found = &map_.ptr[i].val;
    }
    return OkStatus();
  }

  Status Require(std::string_view key, const msgpack::object** found) const {
    ET_RETURN_IF_ERROR(Find(key, found));
    if (*found == nullptr) return Invalid(what_, "missing key '" + Name(key) + "'");
    return OkStatus();
  }

  Status Str(std::string_view key, std::string* out, bool required) const {
    const msgpack::object* o = nullptr;
    ET_RETURN_IF_ERROR(required ? Require(key, &o) : Find(key, &o));
    if (o == nullptr) return OkStatus();
    if (o->type != msgpack::type::STR) return WrongType(key, "a string");
    out->assign(o->via.str.ptr, o->via.str.size);
    return OkStatus();
  }

  Status OptionalStr(std::string_view key, std::optional<std::string>* out) const {
    const msgpack::object* o = nullptr;
    ET_RETURN_IF_ERROR(Find(key, &o));
    if (o == nullptr || o->type == msgpack::type::NIL) return OkStatus();
    if (o->type != msgpack::type::STR) return WrongType(key, "a string");
    out->emplace(o->via.str.ptr, o->via.str.size);
    return OkStatus();
  }

  Status Bin(std::string_view key, Bytes* out, bool required) const {
    const msgpack::object* o = nullptr;
    ET_RETURN_IF_ERROR(required ? Require(key, &o) : Find(key, &o));
    if (o == nullptr) return OkStatus();
    if (o->type != msgpack::type::BIN) return WrongType(key, "binary");
    const auto* p = reinterpret_cast<const uint8_t*>(o->via.bin.ptr);
    out->assign(p, p + o->via.bin.size);
    return OkStatus();
  }

  Status BinArray(std::string_view key, std::vector<Bytes>* out, bool required) const {
    const msgpack::object* o = nullptr;
    ET_RETURN_IF_ERROR(required ? Require(key, &o) : Find(key, &o));
    if (o == nullptr) return OkStatus();
    if (o->type != msgpack::type::ARRAY) return WrongType(key, "an array of binary");
    out->clear();
    out->reserve(o->via.array.size);
    for (uint32_t i = 0; i < o->via.array.size; ++i) {
      const msgpack::object& e = o->via.array.ptr[i];
      if (e.type != msgpack::type::BIN) return WrongType(key, "an array of binary");
      const auto* p = reinterpret_cast<const uint8_t*>(e.via.bin.ptr);
      out->emplace_back(p, p + e.via.bin.size);
    }
    return OkStatus();
  }

  Status Bool(std::string_view key, bool* out, bool required) const {
    const msgpack::object* o = nullptr;
    ET_RETURN_IF_ERROR(required ? Require(key, &o) : Find(key, &o));
    if (o == nullptr) return OkStatus();
    if (o->type != msgpack::type::BOOLEAN) return WrongType(key, "a boolean");
    *out = o->via.boolean;
    return OkStatus();
  }

  Status Int(std::string_view key, int64_t* out, int64_t min, int64_t max, bool required) const {
    const msgpack::object* o = nullptr;
    ET_RETURN_IF_ERROR(required ? Require(key, &o) : Find(key, &o));
    if (o == nullptr) return OkStatus();
    int64_t v = 0;
    if (o->type == msgpack::type::POSITIVE_INTEGER) {
      if (o->via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return OutOfRange(key, min, max);
      }
      v = static_cast<int64_t>(o->via.u64);
    } else if (o->type == msgpack::type::NEGATIVE_INTEGER) {
      v = o->via.i64;
    } else {
      return WrongType(key, "an integer");
    }
    if (v < min || v > max) return OutOfRange(key, min, max);
    *out = v;
    return OkStatus();
  }

  template <typename U>
  Status Uint(std::string_view key, U* out, U min, U max, bool required) const {
    int64_t v = static_cast<int64_t>(*out);
    ET_RETURN_IF_ERROR(Int(key, &v, static_cast<int64_t>(min), static_cast<int64_t>(max), required));
    *out = static_cast<U>(v);
    return OkStatus();
  }

  std::string Name(std::string_view key) const { return key_prefix_ + std::string(key); }
  std::string_view what() const { return what_; }

 private:
  Error WrongType(std::string_view key, std::string_view type) const {
    return Invalid(what_, "key '" + Name(key) + "' must be " + std::string(type));
  }
  Error OutOfRange(std::string_view key, int64_t min, int64_t max) const {
    return Invalid(what_, "key '" + Name(key) + "' must be in " + std::to_string(min) + ".." +
                              std::to_string(max));
  }

  const msgpack::object_map& map_;
  std::string_view what_;
  std::string key_prefix_;
};

// Reference strings and binaries in the caller's buffer instead of copying them into the zone: the
// object never outlives the decode call.
bool ReferenceAll(msgpack::type::object_type, std::size_t, void*) { return true; }

// Top-level limits: enough for every message we define, far below what would cost memory.
const msgpack::unpack_limit kUnpackLimit(/*array=*/64, /*map=*/64, /*str=*/64 * 1024,
                                         /*bin=*/kMaxOtaChunkDataBytes, /*ext=*/0, /*depth=*/4);

template <typename T, typename Fill>
Result<T> DecodeMap(ByteView payload, size_t max_bytes, std::string_view what, Fill&& fill) {
  if (payload.size() > max_bytes) {
    return MakeError(ErrorCode::kResourceExhausted,
                     std::string(what) + ": payload of " + std::to_string(payload.size()) +
                         " bytes exceeds the limit of " + std::to_string(max_bytes));
  }
  if (payload.empty()) return Invalid(what, "empty payload");
  try {
    size_t offset = 0;
    msgpack::object_handle handle =
        msgpack::unpack(reinterpret_cast<const char*>(payload.data()), payload.size(), offset,
                        &ReferenceAll, nullptr, kUnpackLimit);
    if (offset != payload.size()) return Invalid(what, "trailing bytes after the message");
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::MAP) return Invalid(what, "payload is not a msgpack map");
    MapView map(root, what);
    int64_t version = 0;
    ET_RETURN_IF_ERROR(map.Int("v", &version, std::numeric_limits<int64_t>::min(),
                               std::numeric_limits<int64_t>::max(), true));
    if (version != kProtocolVersion) {
      return Invalid(what, "unsupported version v=" + std::to_string(version));
    }
    T out{};
    Status filled = fill(map, out);
    if (!filled.ok()) return std::move(filled).error();
    return out;
  } catch (const std::exception& e) {
    return Invalid(what, std::string("malformed msgpack (") + e.what() + ")");
  } catch (...) {
    return Invalid(what, "malformed msgpack");
  }
}

constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();

void AppendLengthPrefixed(Bytes* out, ByteView b) {
  uint32_t n = static_cast<uint32_t>(b.size());
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(n >> shift));
  out->insert(out->end(), b.begin(), b.end());
}

}  // namespace
}  // namespace internal

using internal::DecodeMap;
using internal::Invalid;
using internal::MapView;
using internal::MapWriter;

// ---- names ----

namespace {
constexpr std::array<std::string_view, 5> kOtaStateNames{"downloading", "verifying", "installed",
                                                         "failed", "rejected"};
constexpr std::array<std::string_view, 3> kLifecycleNames{"wipe", "reenroll", "renew"};
}  // namespace

std::string_view OtaStateName(OtaState state) {
  return kOtaStateNames[static_cast<size_t>(state)];
}

std::optional<OtaState> ParseOtaState(std::string_view name) {
  for (size_t i = 0; i < kOtaStateNames.size(); ++i) {
    if (kOtaStateNames[i] == name) return static_cast<OtaState>(i);
  }
  return std::nullopt;
}

std::string_view LifecycleActionKindName(LifecycleActionKind action) {
  return kLifecycleNames[static_cast<size_t>(action)];
}

std::optional<LifecycleActionKind> ParseLifecycleActionKind(std::string_view name) {
  for (size_t i = 0; i < kLifecycleNames.size(); ++i) {
    if (kLifecycleNames[i] == name) return static_cast<LifecycleActionKind>(i);
  }
  return std::nullopt;
}

// ---- enroll / cert ----

Bytes EncodeEnrollRequest(const EnrollRequest& m) {
  Bytes out;
  out.reserve(64 + m.rid.size() + m.csr.size() + m.birth.size() + m.fw.size() + m.model.size());
  MapWriter w(&out, m.claim ? 6 : 5);
  w.Str("rid", m.rid);
  w.Bin("csr", m.csr);
  w.Bin("birth", m.birth);
  w.Str("fw", m.fw);
  w.Str("model", m.model);
  if (m.claim) w.Str("claim", *m.claim);
  return out;
}

Result<EnrollRequest> DecodeEnrollRequest(ByteView payload) {
  return DecodeMap<EnrollRequest>(
      payload, kMaxEnrollPayloadBytes, "enroll request", [](const MapView& m, EnrollRequest& r) -> Status {
        ET_RETURN_IF_ERROR(m.Str("rid", &r.rid, true));
        ET_RETURN_IF_ERROR(m.Bin("csr", &r.csr, true));
        ET_RETURN_IF_ERROR(m.Bin("birth", &r.birth, true));
        ET_RETURN_IF_ERROR(m.Str("fw", &r.fw, false));
        ET_RETURN_IF_ERROR(m.Str("model", &r.model, false));
        ET_RETURN_IF_ERROR(m.OptionalStr("claim", &r.claim));
        if (r.csr.empty()) return Invalid(m.what(), "key 'csr' is empty");
        if (r.birth.empty()) return Invalid(m.what(), "key 'birth' is empty");
        return OkStatus();
      });
}

Bytes EncodeEnrollResponse(const EnrollResponse& m) {
  Bytes out;
  if (!m.ok) {
    MapWriter w(&out, 4);
    w.Str("rid", m.rid);
    w.Bool("ok", false);
    w.Str("err", m.err);
    w.Str("msg", m.msg);
    return out;
  }
  size_t chain_bytes = 0;
  for (const Bytes& b : m.chain) chain_bytes += b.size() + 5;
  out.reserve(64 + m.rid.size() + m.cert.size() + chain_bytes + m.site.size() + m.lifecycle_ca.size());
  MapWriter w(&out, m.lifecycle_ca.empty() ? 5 : 6);
  w.Str("rid", m.rid);
  w.Bool("ok", true);
  w.Bin("cert", m.cert);
  w.BinArray("chain", m.chain);
  w.Str("site", m.site);
  if (!m.lifecycle_ca.empty()) w.Bin("lifecycle_ca", m.lifecycle_ca);
  return out;
}

Result<EnrollResponse> DecodeEnrollResponse(ByteView payload) {
  return DecodeMap<EnrollResponse>(
      payload, kMaxEnrollPayloadBytes, "enroll response",
      [](const MapView& m, EnrollResponse& r) -> Status {
        ET_RETURN_IF_ERROR(m.Str("rid", &r.rid, true));
        ET_RETURN_IF_ERROR(m.Bool("ok", &r.ok, true));
        ET_RETURN_IF_ERROR(m.Str("msg", &r.msg, false));
        if (!r.ok) return m.Str("err", &r.err, true);
        ET_RETURN_IF_ERROR(m.Bin("cert", &r.cert, true));
        if (r.cert.empty()) return Invalid(m.what(), "key 'cert' is empty");
        ET_RETURN_IF_ERROR(m.BinArray("chain", &r.chain, false));
        ET_RETURN_IF_ERROR(m.Str("site", &r.site, false));
        return m.Bin("lifecycle_ca", &r.lifecycle_ca, false);
      });
}

Bytes EncodeErrorResponse(std::string_view rid, std::string_view err, std::string_view msg) {
  Bytes out;
  MapWriter w(&out, 4);
  w.Str("rid", rid);
  w.Bool("ok", false);
  w.Str("err", err);
  w.Str("msg", msg);
  return out;
}

std::string PeekRequestId(ByteView payload) {
  if (payload.empty() || payload.size() > kMaxEnrollPayloadBytes) return {};
  try {
    size_t offset = 0;
    msgpack::object_handle handle =
        msgpack::unpack(reinterpret_cast<const char*>(payload.data()), payload.size(), offset,
                        &internal::ReferenceAll, nullptr, internal::kUnpackLimit);
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::MAP) return {};
    for (uint32_t i = 0; i < root.via.map.size; ++i) {
      const msgpack::object& k = root.via.map.ptr[i].key;
      const msgpack::object& v = root.via.map.ptr[i].val;
      if (k.type == msgpack::type::STR && std::string_view(k.via.str.ptr, k.via.str.size) == "rid" &&
          v.type == msgpack::type::STR && v.via.str.size <= 128) {
        return std::string(v.via.str.ptr, v.via.str.size);
      }
    }
  } catch (...) {
    // Undecodable: there is no rid to echo.
  }
  return {};
}

// ---- state ----

Bytes EncodeStateMessage(const StateMessage& m) {
  Bytes out;
  MapWriter w(&out, m.ota ? 3 : 2);
  w.Str("fw", m.fw);
  w.Str("model", m.model);
  if (m.ota) {
    w.NestedMap("ota", 2);
    w.Str("image", m.ota->image);
    w.Uint("next", m.ota->next);
  }
  return out;
}

Result<StateMessage> DecodeStateMessage(ByteView payload) {
  return DecodeMap<StateMessage>(
      payload, kMaxSmallPayloadBytes, "state", [](const MapView& m, StateMessage& r) -> Status {
        ET_RETURN_IF_ERROR(m.Str("fw", &r.fw, true));
        ET_RETURN_IF_ERROR(m.Str("model", &r.model, true));
        const msgpack::object* ota = nullptr;
        ET_RETURN_IF_ERROR(m.Find("ota", &ota));
        if (ota == nullptr || ota->type == msgpack::type::NIL) return OkStatus();
        if (ota->type != msgpack::type::MAP) return Invalid(m.what(), "key 'ota' must be a map");
        MapView o(*ota, m.what(), "ota.");
        OtaProgress p;
        ET_RETURN_IF_ERROR(o.Str("image", &p.image, true));
        ET_RETURN_IF_ERROR(o.Uint<uint32_t>("next", &p.next, 0, internal::kU32Max, true));
        r.ota = std::move(p);
        return OkStatus();
      });
}

// ---- ota ----

Bytes EncodeOtaOffer(const OtaOffer& m) {
  Bytes out;
  MapWriter w(&out, 7);
  w.Str("image", m.image);
  w.Str("version", m.version);
  w.Uint("size", m.size);
  w.Uint("chunk", m.chunk);
  w.Bin("sha256", m.sha256);
  w.Bin("sig", m.sig);
  w.Str("key", m.key);
  return out;
}

Result<OtaOffer> DecodeOtaOffer(ByteView payload) {
  return DecodeMap<OtaOffer>(
      payload, kMaxSmallPayloadBytes, "ota offer", [](const MapView& m, OtaOffer& r) -> Status {
        ET_RETURN_IF_ERROR(m.Str("image", &r.image, true));
        ET_RETURN_IF_ERROR(m.Str("version", &r.version, true));
        int64_t size = 0;
        ET_RETURN_IF_ERROR(m.Int("size", &size, 1, std::numeric_limits<int64_t>::max(), true));
        r.size = static_cast<uint64_t>(size);
        ET_RETURN_IF_ERROR(m.Uint<uint32_t>("chunk", &r.chunk, 1, kMaxOtaChunkDataBytes, true));
        ET_RETURN_IF_ERROR(m.Bin("sha256", &r.sha256, true));
        if (r.sha256.size() != 32) return Invalid(m.what(), "key 'sha256' must be 32 bytes");
        ET_RETURN_IF_ERROR(m.Bin("sig", &r.sig, true));
        if (r.sig.empty()) return Invalid(m.what(), "key 'sig' is empty");
        ET_RETURN_IF_ERROR(m.Str("key", &r.key, true));
        if (r.image.empty()) return Invalid(m.what(), "key 'image' is empty");
        return OkStatus();
      });
}

Bytes EncodeOtaGet(const OtaGet& m) {
  Bytes out;
  MapWriter w(&out, 3);
  w.Str("image", m.image);
  w.Uint("first", m.first);
  w.Uint("count", m.count);
  return out;
}

Result<OtaGet> DecodeOtaGet(ByteView payload) {
  return DecodeMap<OtaGet>(
      payload, kMaxSmallPayloadBytes, "ota get", [](const MapView& m, OtaGet& r) -> Status {
        ET_RETURN_IF_ERROR(m.Str("image", &r.image, true));
        ET_RETURN_IF_ERROR(m.Uint<uint32_t>("first", &r.first, 0, internal::kU32Max, true));
        ET_RETURN_IF_ERROR(m.Uint<uint32_t>("count", &r.count, 1, internal::kU32Max, true));
        return OkStatus();
      });
}

Bytes EncodeOtaChunk(const OtaChunk& m) {
  Bytes out;
  out.reserve(m.data.size() + m.image.size() + 32);
  MapWriter w(&out, 3);
  w.Str("image", m.image);
  w.Uint("i", m.i);
  w.Bin("data", m.data);
  return out;
}

Result<OtaChunk> DecodeOtaChunk(ByteView payload) {
  return DecodeMap<OtaChunk>(
      payload, kMaxOtaChunkPayloadBytes, "ota chunk", [](const MapView& m, OtaChunk& r) -> Status {
        ET_RETURN_IF_ERROR(m.Str("image", &r.image, true));
        ET_RETURN_IF_ERROR(m.Uint<uint32_t>("i", &r.i, 0, internal::kU32Max, true));
        ET_RETURN_IF_ERROR(m.Bin("data", &r.data, true));
        return OkStatus();
      });
}

Bytes EncodeOtaStatus(const OtaStatus& m) {
  Bytes out;
  MapWriter w(&out, m.err.empty() ? 3 : 4);
  w.Str("image", m.image);
  w.Str("state", OtaStateName(m.state));
  w.Uint("progress", m.progress);
  if (!m.err.empty()) w.Str("err", m.err);
  return out;
}

Result<OtaStatus> DecodeOtaStatus(ByteView payload) {
  return DecodeMap<OtaStatus>(
      payload, kMaxSmallPayloadBytes, "ota status", [](const MapView& m, OtaStatus& r) -> Status {
        ET_RETURN_IF_ERROR(m.Str("image", &r.image, true));
        std::string state;
        ET_RETURN_IF_ERROR(m.Str("state", &state, true));
        auto parsed = ParseOtaState(state);
        if (!parsed) return Invalid(m.what(), "key 'state' has unknown value '" + state + "'");
        r.state = *parsed;
        ET_RETURN_IF_ERROR(m.Uint<uint32_t>("progress", &r.progress, 0, 100, false));
        return m.Str("err", &r.err, false);
      });
}

// ---- lifecycle ----

Bytes EncodeLifecycleCommand(const LifecycleCommand& m) {
  Bytes out;
  MapWriter w(&out, 4);
  w.Str("action", LifecycleActionKindName(m.action));
  w.Bin("nonce", m.nonce);
  w.Int("ts", m.ts);
  w.Bin("sig", m.sig);
  return out;
}

Result<LifecycleCommand> DecodeLifecycleCommand(ByteView payload) {
  return DecodeMap<LifecycleCommand>(
      payload, kMaxSmallPayloadBytes, "lifecycle", [](const MapView& m, LifecycleCommand& r) -> Status {
        std::string action;
        ET_RETURN_IF_ERROR(m.Str("action", &action, true));
        auto parsed = ParseLifecycleActionKind(action);
        if (!parsed) return Invalid(m.what(), "key 'action' has unknown value '" + action + "'");
        r.action = *parsed;
        ET_RETURN_IF_ERROR(m.Bin("nonce", &r.nonce, true));
        if (r.nonce.size() < 8 || r.nonce.size() > 64) {
          return Invalid(m.what(), "key 'nonce' must be 8..64 bytes");
        }
        ET_RETURN_IF_ERROR(m.Int("ts", &r.ts, 0, std::numeric_limits<int64_t>::max(), true));
        ET_RETURN_IF_ERROR(m.Bin("sig", &r.sig, true));
        if (r.sig.empty()) return Invalid(m.what(), "key 'sig' is empty");
        return OkStatus();
      });
}

Bytes LifecycleSigningBytes(std::string_view device_id, const LifecycleCommand& cmd) {
  constexpr std::string_view kDomain = "edgetrust-lifecycle-v1";
  Bytes out(kDomain.begin(), kDomain.end());
  out.reserve(kDomain.size() + device_id.size() + cmd.nonce.size() + 32);
  internal::AppendLengthPrefixed(&out, AsBytes(device_id));
  internal::AppendLengthPrefixed(&out, AsBytes(LifecycleActionKindName(cmd.action)));
  internal::AppendLengthPrefixed(&out, cmd.nonce);
  uint64_t ts = static_cast<uint64_t>(cmd.ts);
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(ts >> shift));
  return out;
}

}  // namespace edgetrust::protocol
