#include "codec.h"

#include <msgpack.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <string_view>

namespace edgetrust::storage::internal {
namespace {

struct StringStream {
  std::string* out;
  void write(const char* data, size_t size) { out->append(data, size); }
};

// Collects fields, then prefixes the map header, so the field count can never disagree.
class MapWriter {
 public:
  MapWriter() : stream_{&body_}, packer_(stream_) {}
  MapWriter& Str(std::string_view key, std::string_view v) {
    Key(key);
    packer_.pack_str(static_cast<uint32_t>(v.size()));
    packer_.pack_str_body(v.data(), static_cast<uint32_t>(v.size()));
    return *this;
  }
  MapWriter& Bin(std::string_view key, ByteView v) {
    Key(key);
    packer_.pack_bin(static_cast<uint32_t>(v.size()));
    packer_.pack_bin_body(reinterpret_cast<const char*>(v.data()), static_cast<uint32_t>(v.size()));
    return *this;
  }
  MapWriter& Int(std::string_view key, int64_t v) {
    Key(key);
    packer_.pack(v);
    return *this;
  }
  MapWriter& Uint(std::string_view key, uint64_t v) {
    Key(key);
    packer_.pack(v);
    return *this;
  }
  // Written only when true: a record without the key reads as false.
  MapWriter& TrueOnly(std::string_view key, bool v) {
    if (!v) return *this;
    Key(key);
    packer_.pack_true();
    return *this;
  }
  std::string Finish() {
    std::string out;
    out.reserve(body_.size() + 5);
    StringStream s{&out};
    msgpack::packer<StringStream>(s).pack_map(count_);
    out += body_;
    return out;
  }

 private:
  void Key(std::string_view key) {
    ++count_;
    packer_.pack_str(static_cast<uint32_t>(key.size()));
    packer_.pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
  }
  std::string body_;
  StringStream stream_;
  msgpack::packer<StringStream> packer_;
  uint32_t count_ = 0;
};

bool Get(const msgpack::object& v, std::string* out) {
  if (v.type == msgpack::type::STR) {
    out->assign(v.via.str.ptr, v.via.str.size);
    return true;
  }
  return false;
}

bool Get(const msgpack::object& v, Bytes* out) {
  if (v.type == msgpack::type::BIN) {
    const auto* p = reinterpret_cast<const uint8_t*>(v.via.bin.ptr);
    out->assign(p, p + v.via.bin.size);
    return true;
  }
  return false;
}

bool Get(const msgpack::object& v, int64_t* out) {
  if (v.type == msgpack::type::NEGATIVE_INTEGER) {
    *out = v.via.i64;
    return true;
  }
  if (v.type == msgpack::type::POSITIVE_INTEGER &&
      v.via.u64 <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    *out = static_cast<int64_t>(v.via.u64);
    return true;
  }
  return false;
}

template <typename U>
bool GetUnsigned(const msgpack::object& v, U* out) {
  if (v.type == msgpack::type::POSITIVE_INTEGER && v.via.u64 <= std::numeric_limits<U>::max()) {
    *out = static_cast<U>(v.via.u64);
    return true;
  }
  return false;
}
bool Get(const msgpack::object& v, uint64_t* out) { return GetUnsigned(v, out); }
bool Get(const msgpack::object& v, uint32_t* out) { return GetUnsigned(v, out); }
bool Get(const msgpack::object& v, uint8_t* out) { return GetUnsigned(v, out); }

Error Corrupt(std::string_view what, std::string_view why) {
  return MakeError(ErrorCode::kDataLoss,
                   "corrupt " + std::string(what) + " record: " + std::string(why));
}

// A record key (1-3 bytes, as every key this file writes) as one integer, so the in-place
// decoders pick a field with a switch: a chain of string compares cost a memcmp call per
// candidate, close to half of the device decode on the plugin's CONNECT path. Longer keys map
// to 0, which no case uses: they are unknown, hence skipped.
constexpr uint32_t KeyCode(std::string_view key) {
  if (key.empty() || key.size() > 3) return 0;
  uint32_t code = static_cast<uint32_t>(key.size()) << 24;
  for (size_t i = 0; i < key.size(); ++i) {
    code |= static_cast<uint32_t>(static_cast<uint8_t>(key[i])) << (8 * (2 - i));
  }
  return code;
}

// A bounds-checked cursor over msgpack bytes for the in-place decoders.
class InPlaceReader {
 public:
  explicit InPlaceReader(ByteView data) : p_(data.data()), end_(data.data() + data.size()) {}
  bool at_end() const { return p_ == end_; }

  bool MapHeader(uint32_t* n) {
    if (at_end()) return false;
    const uint8_t t = *p_;
    uint64_t count = 0;
    if (t >= 0x80 && t <= 0x8f) {
      ++p_;
      count = t & 0x0f;
    } else if (t == 0xde || t == 0xdf) {
      ++p_;
      if (!ReadBe(t == 0xde ? 2 : 4, &count)) return false;
    } else {
      return false;
    }
    *n = static_cast<uint32_t>(count);
    return true;
  }

  // The next value if it is a str; on any other type nothing is consumed and false returned.
  bool Str(std::string_view* out) {
    const uint8_t* start = p_;
    if (at_end()) return false;
    const uint8_t t = *p_++;
    uint64_t len = 0;
    if (t >= 0xa0 && t <= 0xbf) {
      len = t & 0x1f;
    } else if (t == 0xd9 || t == 0xda || t == 0xdb) {
      if (!ReadBe(t == 0xd9 ? 1 : t == 0xda ? 2 : 4, &len)) return Rewind(start);
    } else {
      return Rewind(start);
    }
    if (!Need(len)) return Rewind(start);
    *out = std::string_view(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    return true;
  }

  // The next value if it is a bin; as Str otherwise.
  bool Bin(ByteView* out) {
    const uint8_t* start = p_;
    if (at_end()) return false;
    const uint8_t t = *p_++;
    uint64_t len = 0;
    if (t != 0xc4 && t != 0xc5 && t != 0xc6) return Rewind(start);
    if (!ReadBe(t == 0xc4 ? 1 : t == 0xc5 ? 2 : 4, &len) || !Need(len)) return Rewind(start);
    *out = ByteView(p_, len);
    p_ += len;
    return true;
  }

  bool Str(std::string* out) {
    std::string_view v;
    if (!Str(&v)) return false;
    out->assign(v);
    return true;
  }
  bool Bin(Bytes* out) {
    ByteView v;
    if (!Bin(&v)) return false;
    out->assign(v.begin(), v.end());
    return true;
  }

  // The next value if it is an integer that fits int64_t, in any of msgpack's integer
  // encodings (as msgpack-c's decoders take it); as Str otherwise.
  bool Int(int64_t* out) {
    const uint8_t* start = p_;
    if (at_end()) return false;
    const uint8_t t = *p_++;
    if (t <= 0x7f) {
      *out = t;
      return true;
    }
    if (t >= 0xe0) {
      *out = static_cast<int8_t>(t);
      return true;
    }
    int bytes = 0;
    bool is_signed = false;
    switch (t) {
      case 0xcc: bytes = 1; break;
      case 0xcd: bytes = 2; break;
      case 0xce: bytes = 4; break;
      case 0xcf: bytes = 8; break;
      case 0xd0: bytes = 1; is_signed = true; break;
      case 0xd1: bytes = 2; is_signed = true; break;
      case 0xd2: bytes = 4; is_signed = true; break;
      case 0xd3: bytes = 8; is_signed = true; break;
      default: return Rewind(start);
    }
    uint64_t v = 0;
    if (!ReadBe(bytes, &v)) return Rewind(start);
    if (is_signed) {
      const int shift = 64 - 8 * bytes;  // sign-extend from the encoded width
      *out = static_cast<int64_t>(v << shift) >> shift;
      return true;
    }
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Rewind(start);
    *out = static_cast<int64_t>(v);
    return true;
  }

  // The next value if it is a bool; as Str otherwise.
  bool Bool(bool* out) {
    if (at_end() || (*p_ != 0xc2 && *p_ != 0xc3)) return false;
    *out = *p_++ == 0xc3;
    return true;
  }

  // Skips one whole value, nested containers included, without recursion.
  bool Skip() {
    uint64_t pending = 1;
    while (pending > 0) {
      if (at_end()) return false;
      const uint8_t t = *p_++;
      --pending;
      uint64_t len = 0;       // payload bytes after the header
      uint64_t children = 0;  // values nested in it
      if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        // the byte is the whole value
      } else if (t <= 0x8f) {
        children = 2u * (t & 0x0f);
      } else if (t <= 0x9f) {
        children = t & 0x0f;
      } else if (t <= 0xbf) {
        len = t & 0x1f;
      } else {
        bool ok = true;
        switch (t) {
          case 0xc4: case 0xd9: ok = ReadBe(1, &len); break;
          case 0xc5: case 0xda: ok = ReadBe(2, &len); break;
          case 0xc6: case 0xdb: ok = ReadBe(4, &len); break;
          case 0xc7: ok = ReadBe(1, &len); ++len; break;  // ext: + its type byte
          case 0xc8: ok = ReadBe(2, &len); ++len; break;
          case 0xc9: ok = ReadBe(4, &len); ++len; break;
          case 0xca: len = 4; break;
          case 0xcb: len = 8; break;
          case 0xcc: case 0xd0: len = 1; break;
          case 0xcd: case 0xd1: len = 2; break;
          case 0xce: case 0xd2: len = 4; break;
          case 0xcf: case 0xd3: len = 8; break;
          case 0xd4: len = 2; break;
          case 0xd5: len = 3; break;
          case 0xd6: len = 5; break;
          case 0xd7: len = 9; break;
          case 0xd8: len = 17; break;
          case 0xdc: ok = ReadBe(2, &children); break;
          case 0xdd: ok = ReadBe(4, &children); break;
          case 0xde: ok = ReadBe(2, &children); children *= 2; break;
          case 0xdf: ok = ReadBe(4, &children); children *= 2; break;
          default: return false;  // 0xc1: never used
        }
        if (!ok) return false;
      }
      if (!Need(len)) return false;
      p_ += len;
      pending += children;
      // Every value takes at least one byte: more pending than bytes left is a lie.
      if (pending > static_cast<uint64_t>(end_ - p_)) return false;
    }
    return true;
  }

 private:
  bool Need(uint64_t n) const { return static_cast<uint64_t>(end_ - p_) >= n; }
  bool Rewind(const uint8_t* to) {
    p_ = to;
    return false;
  }
  bool ReadBe(int bytes, uint64_t* out) {
    if (!Need(static_cast<uint64_t>(bytes))) return false;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | *p_++;
    *out = v;
    return true;
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

// Calls on_field(key, reader) for each entry of the map in `data`; on_field consumes the value
// and returns false when it is malformed or, for a known key, of the wrong type.
template <typename F>
Status WalkMapInPlace(ByteView data, std::string_view what, F&& on_field) {
  InPlaceReader r(data);
  uint32_t n = 0;
  if (!r.MapHeader(&n)) return Corrupt(what, "not a msgpack map");
  for (uint32_t i = 0; i < n; ++i) {
    std::string_view key;
    if (!r.Str(&key)) return Corrupt(what, r.at_end() ? "truncated" : "a key is not a string");
    if (!on_field(key, r)) {
      return Corrupt(what, "field '" + std::string(key) + "' is malformed or has the wrong type");
    }
  }
  if (!r.at_end()) return Corrupt(what, "trailing bytes");
  return OkStatus();
}

// Calls on_field(key, value) for each entry of the map in `data`; on_field returns false for a
// known key whose value has the wrong type.
template <typename F>
Status DecodeMap(ByteView data, std::string_view what, F&& on_field) {
  // msgpack-c sets aside room for each array and map at the count its header claims, before it
  // reads one element: five bytes of a corrupt record could ask for 200 GiB. Check the framing
  // in place first, where every count must fit in the bytes that are left.
  InPlaceReader framing(data);
  if (!framing.Skip()) return Corrupt(what, "malformed or truncated msgpack");
  if (!framing.at_end()) return Corrupt(what, "trailing bytes");
  try {
    // Reference strings in place: the record is copied out field by field anyway.
    auto reference = [](msgpack::type::object_type, std::size_t, void*) { return true; };
    // One zone per thread, cleared after each record: it keeps its chunk, so decoding on the
    // plugin's hot path does not malloc for the msgpack tree.
    thread_local msgpack::zone zone;
    struct ZoneClear {
      ~ZoneClear() { zone.clear(); }
    } clear_after;
    std::size_t offset = 0;
    msgpack::object obj = msgpack::unpack(zone, reinterpret_cast<const char*>(data.data()),
                                          data.size(), offset, reference);
    if (offset != data.size()) return Corrupt(what, "trailing bytes");
    if (obj.type != msgpack::type::MAP) return Corrupt(what, "not a msgpack map");
    for (uint32_t i = 0; i < obj.via.map.size; ++i) {
      const msgpack::object_kv& kv = obj.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) return Corrupt(what, "a key is not a string");
      std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (!on_field(key, kv.val)) {
        return Corrupt(what, "field '" + std::string(key) + "' has the wrong type");
      }
    }
  } catch (const std::exception& e) {
    return Corrupt(what, e.what());
  }
  return OkStatus();
}

}  // namespace

// --- DeviceRecord ---

std::string Encode(const DeviceRecord& r) {
  return MapWriter()
      .Str("id", r.id)
      .Str("st", DeviceStateName(r.state))
      .Str("mf", r.manufacturer)
      .Str("mo", r.model)
      .Str("g", r.group)
      .Bin("bf", r.birth_fingerprint)
      .Bin("of", r.operational_fingerprint)
      .Int("on", r.operational_not_after)
      .TrueOnly("ou", r.operational_unconfirmed)
      .Str("fw", r.fw)
      .Bin("cc", r.claim_code_sha256)
      .Int("ca", r.created_at)
      .Int("ua", r.updated_at)
      .Finish();
}

// In place rather than through msgpack-c's object tree: every FindDevice (the gateway on each
// device's state message, the CLI listing a fleet) decoded the whole record twice over, a tree
// in the zone and then the copies. Same acceptance as DecodeMap.
Status Decode(ByteView data, DeviceRecord* r) {
  *r = DeviceRecord{};
  bool state_ok = false;
  ET_RETURN_IF_ERROR(WalkMapInPlace(data, "device", [&](std::string_view k, InPlaceReader& in) {
    switch (KeyCode(k)) {
      case KeyCode("id"): return in.Str(&r->id);
      case KeyCode("st"): {
        std::string_view name;
        if (!in.Str(&name)) return false;
        auto state = ParseDeviceState(name);
        if (!state.ok()) return false;
        r->state = *state;
        state_ok = true;
        return true;
      }
      case KeyCode("mf"): return in.Str(&r->manufacturer);
      case KeyCode("mo"): return in.Str(&r->model);
      case KeyCode("g"): return in.Str(&r->group);
      case KeyCode("bf"): return in.Bin(&r->birth_fingerprint);
      case KeyCode("of"): return in.Bin(&r->operational_fingerprint);
      case KeyCode("on"): return in.Int(&r->operational_not_after);
      case KeyCode("ou"): return in.Bool(&r->operational_unconfirmed);
      case KeyCode("fw"): return in.Str(&r->fw);
      case KeyCode("cc"): return in.Bin(&r->claim_code_sha256);
      case KeyCode("ca"): return in.Int(&r->created_at);
      case KeyCode("ua"): return in.Int(&r->updated_at);
      default: return in.Skip();
    }
  }));
  if (r->id.empty() || !state_ok) return Corrupt("device", "missing id or state");
  return OkStatus();
}

Status DeviceAuthViewWriter::Decode(ByteView data, DeviceAuthView* out) {
  bool id_ok = false;
  bool state_ok = false;
  DeviceState state = DeviceState::kManufactured;
  std::string_view mf, mo;
  ByteView bf, of;
  bool unconfirmed = false;
  ET_RETURN_IF_ERROR(WalkMapInPlace(data, "device", [&](std::string_view k, InPlaceReader& r) {
    switch (KeyCode(k)) {
      case KeyCode("id"): {
        std::string_view id;
        if (!r.Str(&id)) return false;
        id_ok = !id.empty();
        return true;
      }
      case KeyCode("st"): {
        std::string_view name;
        if (!r.Str(&name)) return false;
        auto parsed = ParseDeviceState(name);
        if (!parsed.ok()) return false;
        state = *parsed;
        state_ok = true;
        return true;
      }
      case KeyCode("mf"): return r.Str(&mf);
      case KeyCode("mo"): return r.Str(&mo);
      case KeyCode("bf"): return r.Bin(&bf);
      case KeyCode("of"): return r.Bin(&of);
      case KeyCode("ou"): return r.Bool(&unconfirmed);
      default: return r.Skip();
    }
  }));
  if (!id_ok || !state_ok) return Corrupt("device", "missing id or state");
  if (bf.size() > 32 || of.size() > 32) return Corrupt("device", "fingerprint longer than 32 bytes");
  DeviceAuthView& v = *out;
  v.state_ = state;
  v.operational_unconfirmed_ = unconfirmed;
  // std::copy, not memcpy: an absent field is an empty view whose data() may be null.
  std::copy(bf.begin(), bf.end(), v.birth_fp_.begin());
  v.birth_fp_size_ = static_cast<uint8_t>(bf.size());
  std::copy(of.begin(), of.end(), v.operational_fp_.begin());
  v.operational_fp_size_ = static_cast<uint8_t>(of.size());
  v.names_fit_ = mf.size() <= DeviceAuthView::kMaxName && mo.size() <= DeviceAuthView::kMaxName;
  if (!v.names_fit_) mf = mo = {};
  std::copy(mf.begin(), mf.end(), v.manufacturer_.begin());
  v.manufacturer_size_ = static_cast<uint8_t>(mf.size());
  std::copy(mo.begin(), mo.end(), v.model_.begin());
  v.model_size_ = static_cast<uint8_t>(mo.size());
  return OkStatus();
}

// --- CertificateRecord ---

std::string Encode(const CertificateRecord& r) {
  return MapWriter()
      .Bin("fp", r.fingerprint)
      .Str("d", r.device_id)
      .Str("k", CertificateKindName(r.kind))
      .Bin("i", r.issuer_id)
      .Bin("s", r.serial)
      .Int("nb", r.not_before)
      .Int("na", r.not_after)
      .Bin("der", r.der)
      .Finish();
}

Status Decode(ByteView data, CertificateRecord* r) {
  *r = CertificateRecord{};
  bool kind_ok = false;
  ET_RETURN_IF_ERROR(
      DecodeMap(data, "certificate", [&](std::string_view k, const msgpack::object& v) {
        if (k == "fp") return Get(v, &r->fingerprint);
        if (k == "d") return Get(v, &r->device_id);
        if (k == "k") {
          if (v.type != msgpack::type::STR) return false;
          auto kind = ParseCertificateKind(std::string_view(v.via.str.ptr, v.via.str.size));
          if (!kind.ok()) return false;
          r->kind = *kind;
          kind_ok = true;
          return true;
        }
        if (k == "i") return Get(v, &r->issuer_id);
        if (k == "s") return Get(v, &r->serial);
        if (k == "nb") return Get(v, &r->not_before);
        if (k == "na") return Get(v, &r->not_after);
        if (k == "der") return Get(v, &r->der);
        return true;
      }));
  if (r->fingerprint.empty() || !kind_ok) return Corrupt("certificate", "missing fingerprint or kind");
  return OkStatus();
}

Status DecodeCertificateOwner(ByteView data, CertificateKind* kind, std::string_view* device_id) {
  bool fp_ok = false;
  bool kind_ok = false;
  CertificateKind k_value = CertificateKind::kOperational;
  std::string_view d;
  ET_RETURN_IF_ERROR(
      WalkMapInPlace(data, "certificate", [&](std::string_view k, InPlaceReader& r) {
        switch (KeyCode(k)) {
          case KeyCode("fp"): {
            ByteView fp;
            if (!r.Bin(&fp)) return false;
            fp_ok = !fp.empty();
            return true;
          }
          case KeyCode("d"): return r.Str(&d);
          case KeyCode("k"): {
            std::string_view name;
            if (!r.Str(&name)) return false;
            auto parsed = ParseCertificateKind(name);
            if (!parsed.ok()) return false;
            k_value = *parsed;
            kind_ok = true;
            return true;
          }
          default: return r.Skip();
        }
      }));
  if (!fp_ok || !kind_ok) return Corrupt("certificate", "missing fingerprint or kind");
  *kind = k_value;
  *device_id = d;
  return OkStatus();
}

// --- RevocationRecord (log entry) ---

std::string Encode(const RevocationRecord& r) {
  return MapWriter()
      .Bin("f", r.fingerprint)
      .Bin("i", r.issuer_id)
      .Bin("s", r.serial)
      .Str("d", r.device_id)
      .Str("r", r.reason)
      .Int("t", r.ts)
      .Finish();
}

Status Decode(ByteView data, RevocationRecord* r) {
  *r = RevocationRecord{};
  ET_RETURN_IF_ERROR(
      DecodeMap(data, "revocation", [&](std::string_view k, const msgpack::object& v) {
        if (k == "f") return Get(v, &r->fingerprint);
        if (k == "i") return Get(v, &r->issuer_id);
        if (k == "s") return Get(v, &r->serial);
        if (k == "d") return Get(v, &r->device_id);
        if (k == "r") return Get(v, &r->reason);
        if (k == "t") return Get(v, &r->ts);
        return true;
      }));
  if (r->fingerprint.empty() && (r->issuer_id.empty() || r->serial.empty())) {
    return Corrupt("revocation", "neither fingerprint nor issuer and serial");
  }
  return OkStatus();
}

// --- FirmwareManifest ---

std::string Encode(const FirmwareManifest& r) {
  return MapWriter()
      .Str("img", r.image_id)
      .Str("ver", r.version)
      .Uint("sz", r.size)
      .Uint("cs", r.chunk_size)
      .Bin("h", r.sha256)
      .Bin("sig", r.sig)
      .Str("key", r.key_id)
      .Str("ch", r.channel)
      .Int("ca", r.created_at)
      .Finish();
}

Status Decode(ByteView data, FirmwareManifest* r) {
  *r = FirmwareManifest{};
  ET_RETURN_IF_ERROR(
      DecodeMap(data, "firmware manifest", [&](std::string_view k, const msgpack::object& v) {
        if (k == "img") return Get(v, &r->image_id);
        if (k == "ver") return Get(v, &r->version);
        if (k == "sz") return Get(v, &r->size);
        if (k == "cs") return Get(v, &r->chunk_size);
        if (k == "h") return Get(v, &r->sha256);
        if (k == "sig") return Get(v, &r->sig);
        if (k == "key") return Get(v, &r->key_id);
        if (k == "ch") return Get(v, &r->channel);
        if (k == "ca") return Get(v, &r->created_at);
        return true;
      }));
  if (r->image_id.empty()) return Corrupt("firmware manifest", "missing image id");
  return OkStatus();
}

// --- OutboxMessage ---

std::string Encode(const OutboxMessage& r) {
  return MapWriter()
      .Str("d", r.device_id)
      .Str("c", r.channel)
      .Bin("p", r.payload)
      .Uint("q", r.qos)
      .Int("t", r.ts)
      .Finish();
}

Status Decode(ByteView data, OutboxMessage* r) {
  *r = OutboxMessage{};
  return DecodeMap(data, "outbox message", [&](std::string_view k, const msgpack::object& v) {
    if (k == "d") return Get(v, &r->device_id);
    if (k == "c") return Get(v, &r->channel);
    if (k == "p") return Get(v, &r->payload);
    if (k == "q") return Get(v, &r->qos);
    if (k == "t") return Get(v, &r->ts);
    return true;
  });
}

// --- AuditRecord ---

std::string Encode(const AuditRecord& r) {
  return MapWriter()
      .Int("t", r.ts)
      .Str("a", r.actor)
      .Str("x", r.action)
      .Str("d", r.device_id)
      .Str("m", r.detail)
      .Finish();
}

Status Decode(ByteView data, AuditRecord* r) {
  *r = AuditRecord{};
  return DecodeMap(data, "audit", [&](std::string_view k, const msgpack::object& v) {
    if (k == "t") return Get(v, &r->ts);
    if (k == "a") return Get(v, &r->actor);
    if (k == "x") return Get(v, &r->action);
    if (k == "d") return Get(v, &r->device_id);
    if (k == "m") return Get(v, &r->detail);
    return true;
  });
}

// --- AllowlistEntry ---

std::string Encode(const AllowlistEntry& r) {
  return MapWriter()
      .Str("id", r.device_id)
      .Bin("s", r.serial)
      .Bin("fp", r.fingerprint)
      .Str("mo", r.model)
      .Str("mf", r.manufacturer)
      .Finish();
}

Status Decode(ByteView data, AllowlistEntry* r) {
  *r = AllowlistEntry{};
  ET_RETURN_IF_ERROR(
      DecodeMap(data, "allowlist", [&](std::string_view k, const msgpack::object& v) {
        if (k == "id") return Get(v, &r->device_id);
        if (k == "s") return Get(v, &r->serial);
        if (k == "fp") return Get(v, &r->fingerprint);
        if (k == "mo") return Get(v, &r->model);
        if (k == "mf") return Get(v, &r->manufacturer);
        return true;
      }));
  if (r->device_id.empty()) return Corrupt("allowlist", "missing device id");
  return OkStatus();
}

}  // namespace edgetrust::storage::internal
