#include <gtest/gtest.h>

#include <msgpack.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "edgetrust/protocol/messages.h"

namespace edgetrust::protocol {
namespace {

Bytes Filled(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 31);
  return b;
}

// Builds arbitrary msgpack maps so tests can drop keys, change types, add junk.
class MapBuilder {
 public:
  using Value = std::function<void(msgpack::packer<msgpack::sbuffer>&)>;

  MapBuilder& Set(const std::string& key, Value v) {
    for (auto& e : entries_) {
      if (e.first == key) {
        e.second = std::move(v);
        return *this;
      }
    }
    entries_.emplace_back(key, std::move(v));
    return *this;
  }
  MapBuilder& Erase(const std::string& key) {
    std::erase_if(entries_, [&](const auto& e) { return e.first == key; });
    return *this;
  }
  Bytes Build() const {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(static_cast<uint32_t>(entries_.size()));
    for (const auto& [k, v] : entries_) {
      pk.pack(k);
      v(pk);
    }
    return Bytes(buf.data(), buf.data() + buf.size());
  }

  static Value Str(std::string s) {
    return [s](auto& pk) { pk.pack(s); };
  }
  static Value Bin(Bytes b) {
    return [b](auto& pk) {
      pk.pack_bin(static_cast<uint32_t>(b.size()));
      pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
    };
  }
  static Value Int(int64_t i) {
    return [i](auto& pk) { pk.pack(i); };
  }
  static Value Bool(bool b) {
    return [b](auto& pk) { pk.pack(b); };
  }
  static Value Nil() {
    return [](auto& pk) { pk.pack_nil(); };
  }
  static Value Float(double d) {
    return [d](auto& pk) { pk.pack(d); };
  }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
};

using MB = MapBuilder;

template <typename T>
void ExpectInvalid(const Result<T>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "decoded although invalid (" << needle << ")";
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().message;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

EnrollRequest SampleEnroll() {
  EnrollRequest r;
  r.rid = "r-1";
  r.csr = Filled(300, 1);
  r.birth = Filled(500, 2);
  r.fw = "1.2.3";
  r.model = "thermo-x";
  r.claim = "CLAIM-123";
  return r;
}

TEST(Messages, EnrollRequestRoundTrip) {
  EnrollRequest in = SampleEnroll();
  auto out = DecodeEnrollRequest(EncodeEnrollRequest(in));
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(out->rid, in.rid);
  EXPECT_EQ(out->csr, in.csr);
  EXPECT_EQ(out->birth, in.birth);
  EXPECT_EQ(out->fw, in.fw);
  EXPECT_EQ(out->model, in.model);
  EXPECT_EQ(out->claim, in.claim);
  in.claim.reset();
  auto no_claim = DecodeEnrollRequest(EncodeEnrollRequest(in));
  ASSERT_TRUE(no_claim.ok());
  EXPECT_FALSE(no_claim->claim.has_value());
}

MB EnrollMap() {
  MB m;
  m.Set("v", MB::Int(1))
      .Set("rid", MB::Str("r-9"))
      .Set("csr", MB::Bin(Filled(10, 3)))
      .Set("birth", MB::Bin(Filled(10, 4)))
      .Set("fw", MB::Str("1"))
      .Set("model", MB::Str("m"));
  return m;
}

TEST(Messages, EnrollRequestKeys) {
  ASSERT_TRUE(DecodeEnrollRequest(EnrollMap().Build()).ok());
  // Unknown keys are ignored; optional ones may be absent.
  auto extra = DecodeEnrollRequest(EnrollMap().Set("future", MB::Int(7)).Erase("fw").Erase("model").Build());
  ASSERT_TRUE(extra.ok()) << extra.error().ToString();
  EXPECT_EQ(extra->fw, "");
  for (const char* key : {"v", "rid", "csr", "birth"}) {
    ExpectInvalid(DecodeEnrollRequest(EnrollMap().Erase(key).Build()), std::string("missing key '") + key + "'");
  }
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("rid", MB::Int(5)).Build()), "key 'rid' must be a string");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("csr", MB::Str("PEM?")).Build()), "key 'csr' must be binary");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("birth", MB::Nil()).Build()), "key 'birth' must be binary");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("fw", MB::Bool(true)).Build()), "key 'fw' must be a string");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("model", MB::Float(1.5)).Build()), "key 'model' must be a string");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("claim", MB::Bin({1})).Build()), "key 'claim' must be a string");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("csr", MB::Bin({})).Build()), "key 'csr' is empty");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("v", MB::Int(2)).Build()), "unsupported version v=2");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("v", MB::Int(0)).Build()), "unsupported version v=0");
  ExpectInvalid(DecodeEnrollRequest(EnrollMap().Set("v", MB::Str("1")).Build()), "key 'v' must be an integer");
  // A claim of nil counts as absent.
  auto nil_claim = DecodeEnrollRequest(EnrollMap().Set("claim", MB::Nil()).Build());
  ASSERT_TRUE(nil_claim.ok());
  EXPECT_FALSE(nil_claim->claim);
}

TEST(Messages, DuplicateKnownKeyIsRefused) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(5);
  pk.pack(std::string("v"));
  pk.pack(1);
  pk.pack(std::string("rid"));
  pk.pack(std::string("a"));
  pk.pack(std::string("rid"));
  pk.pack(std::string("b"));
  pk.pack(std::string("csr"));
  pk.pack_bin(1);
  pk.pack_bin_body("x", 1);
  pk.pack(std::string("birth"));
  pk.pack_bin(1);
  pk.pack_bin_body("y", 1);
  ExpectInvalid(DecodeEnrollRequest(Bytes(buf.data(), buf.data() + buf.size())), "duplicate key 'rid'");
}

TEST(Messages, EnrollResponseRoundTrip) {
  EnrollResponse ok;
  ok.rid = "r-1";
  ok.ok = true;
  ok.cert = Filled(400, 5);
  ok.chain = {Filled(300, 6), Filled(200, 7)};
  ok.site = "edge-01";
  ok.lifecycle_ca = Filled(250, 8);
  auto out = DecodeEnrollResponse(EncodeEnrollResponse(ok));
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_TRUE(out->ok);
  EXPECT_EQ(out->rid, "r-1");
  EXPECT_EQ(out->cert, ok.cert);
  EXPECT_EQ(out->chain, ok.chain);
  EXPECT_EQ(out->site, "edge-01");
  EXPECT_EQ(out->lifecycle_ca, ok.lifecycle_ca);

  EnrollResponse bad;
  bad.rid = "r-2";
  bad.err = std::string(kErrNotAllowlisted);
  bad.msg = "device is not in a factory manifest";
  auto b = DecodeEnrollResponse(EncodeEnrollResponse(bad));
  ASSERT_TRUE(b.ok()) << b.error().ToString();
  EXPECT_FALSE(b->ok);
  EXPECT_EQ(b->err, "not_allowlisted");
  EXPECT_EQ(b->msg, bad.msg);
  EXPECT_TRUE(b->cert.empty());

  auto e = DecodeEnrollResponse(EncodeErrorResponse("r-3", kErrBadRequest, "missing key 'csr'"));
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  EXPECT_EQ(e->rid, "r-3");
  EXPECT_FALSE(e->ok);
  EXPECT_EQ(e->err, "bad_request");
  EXPECT_EQ(e->msg, "missing key 'csr'");
}

TEST(Messages, EnrollResponseKeys) {
  auto ok_map = [] {
    MB m;
    m.Set("v", MB::Int(1)).Set("rid", MB::Str("r")).Set("ok", MB::Bool(true)).Set("cert", MB::Bin({1, 2}));
    return m;
  };
  ASSERT_TRUE(DecodeEnrollResponse(ok_map().Build()).ok());
  ExpectInvalid(DecodeEnrollResponse(ok_map().Erase("cert").Build()), "missing key 'cert'");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Erase("ok").Build()), "missing key 'ok'");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Erase("rid").Build()), "missing key 'rid'");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Set("ok", MB::Int(1)).Build()), "key 'ok' must be a boolean");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Set("chain", MB::Bin({1})).Build()), "key 'chain' must be an array");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Set("site", MB::Int(1)).Build()), "key 'site' must be a string");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Set("lifecycle_ca", MB::Str("x")).Build()),
                "key 'lifecycle_ca' must be binary");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Set("ok", MB::Bool(false)).Build()), "missing key 'err'");
  ExpectInvalid(DecodeEnrollResponse(ok_map().Set("ok", MB::Bool(false)).Set("err", MB::Int(3)).Build()),
                "key 'err' must be a string");
  // chain with a non-binary element
  MB m = ok_map();
  m.Set("chain", [](auto& pk) {
    pk.pack_array(2);
    pk.pack_bin(1);
    pk.pack_bin_body("a", 1);
    pk.pack(std::string("not bin"));
  });
  ExpectInvalid(DecodeEnrollResponse(m.Build()), "key 'chain' must be an array of binary");
}

TEST(Messages, StateRoundTripAndKeys) {
  StateMessage s{"2.0.0", "thermo-x", OtaProgress{"img-7", 42}};
  auto out = DecodeStateMessage(EncodeStateMessage(s));
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(out->fw, "2.0.0");
  EXPECT_EQ(out->model, "thermo-x");
  ASSERT_TRUE(out->ota);
  EXPECT_EQ(out->ota->image, "img-7");
  EXPECT_EQ(out->ota->next, 42u);
  s.ota.reset();
  auto plain = DecodeStateMessage(EncodeStateMessage(s));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->ota);

  auto base = [] {
    MB m;
    m.Set("v", MB::Int(1)).Set("fw", MB::Str("1")).Set("model", MB::Str("m"));
    return m;
  };
  ExpectInvalid(DecodeStateMessage(base().Erase("fw").Build()), "missing key 'fw'");
  ExpectInvalid(DecodeStateMessage(base().Erase("model").Build()), "missing key 'model'");
  ExpectInvalid(DecodeStateMessage(base().Set("ota", MB::Str("x")).Build()), "key 'ota' must be a map");
  ExpectInvalid(DecodeStateMessage(base().Set("ota", [](auto& pk) {
                                      pk.pack_map(1);
                                      pk.pack(std::string("next"));
                                      pk.pack(3);
                                    }).Build()),
                "missing key 'ota.image'");
  ExpectInvalid(DecodeStateMessage(base().Set("ota", [](auto& pk) {
                                      pk.pack_map(2);
                                      pk.pack(std::string("image"));
                                      pk.pack(std::string("i"));
                                      pk.pack(std::string("next"));
                                      pk.pack(-3);
                                    }).Build()),
                "key 'ota.next' must be in 0..4294967295");
  EXPECT_TRUE(DecodeStateMessage(base().Set("ota", MB::Nil()).Build()).ok());
}

TEST(Messages, OtaOfferRoundTripAndKeys) {
  OtaOffer o{"img-7", "2.0.0", 1000000, 4096, Filled(32, 9), Filled(64, 10), "fw-key-1"};
  auto out = DecodeOtaOffer(EncodeOtaOffer(o));
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(out->image, o.image);
  EXPECT_EQ(out->version, o.version);
  EXPECT_EQ(out->size, o.size);
  EXPECT_EQ(out->chunk, o.chunk);
  EXPECT_EQ(out->sha256, o.sha256);
  EXPECT_EQ(out->sig, o.sig);
  EXPECT_EQ(out->key, o.key);

  Bytes good = EncodeOtaOffer(o);
  for (const char* key : {"image", "version", "size", "chunk", "sha256", "sig", "key"}) {
    MB m;
    m.Set("v", MB::Int(1))
        .Set("image", MB::Str("i"))
        .Set("version", MB::Str("1"))
        .Set("size", MB::Int(10))
        .Set("chunk", MB::Int(4))
        .Set("sha256", MB::Bin(Filled(32, 1)))
        .Set("sig", MB::Bin({1}))
        .Set("key", MB::Str("k"));
    ASSERT_TRUE(DecodeOtaOffer(m.Build()).ok());
    ExpectInvalid(DecodeOtaOffer(m.Erase(key).Build()), std::string("missing key '") + key + "'");
  }
  o.sha256 = Filled(31, 1);
  ExpectInvalid(DecodeOtaOffer(EncodeOtaOffer(o)), "key 'sha256' must be 32 bytes");
  o.sha256 = Filled(32, 1);
  o.chunk = 0;
  ExpectInvalid(DecodeOtaOffer(EncodeOtaOffer(o)), "key 'chunk' must be in 1..");
  o.chunk = kMaxOtaChunkDataBytes + 1;
  ExpectInvalid(DecodeOtaOffer(EncodeOtaOffer(o)), "key 'chunk' must be in 1..");
  o.chunk = 1;
  o.size = 0;
  ExpectInvalid(DecodeOtaOffer(EncodeOtaOffer(o)), "key 'size' must be in 1..");
}

TEST(Messages, OtaGetChunkStatusRoundTripAndKeys) {
  auto get = DecodeOtaGet(EncodeOtaGet({"img", 7, 16}));
  ASSERT_TRUE(get.ok()) << get.error().ToString();
  EXPECT_EQ(get->image, "img");
  EXPECT_EQ(get->first, 7u);
  EXPECT_EQ(get->count, 16u);
  ExpectInvalid(DecodeOtaGet(EncodeOtaGet({"img", 7, 0})), "key 'count' must be in 1..");
  ExpectInvalid(DecodeOtaGet(MB().Set("v", MB::Int(1)).Set("image", MB::Str("i")).Set("count", MB::Int(1)).Build()),
                "missing key 'first'");
  ExpectInvalid(DecodeOtaGet(MB().Set("v", MB::Int(1)).Set("image", MB::Str("i")).Set("first", MB::Int(1LL << 33))
                                 .Set("count", MB::Int(1)).Build()),
                "key 'first' must be in 0..4294967295");

  OtaChunk c{"img", 3, Filled(kMaxOtaChunkDataBytes, 11)};
  auto chunk = DecodeOtaChunk(EncodeOtaChunk(c));
  ASSERT_TRUE(chunk.ok()) << chunk.error().ToString();
  EXPECT_EQ(chunk->i, 3u);
  EXPECT_EQ(chunk->data, c.data);
  ExpectInvalid(DecodeOtaChunk(MB().Set("v", MB::Int(1)).Set("image", MB::Str("i")).Set("i", MB::Int(0))
                                   .Set("data", MB::Str("text")).Build()),
                "key 'data' must be binary");

  for (OtaState st : {OtaState::kDownloading, OtaState::kVerifying, OtaState::kInstalled, OtaState::kFailed,
                      OtaState::kRejected}) {
    OtaStatus s{"img", st, 55, st == OtaState::kFailed ? "sha256 mismatch" : ""};
    auto out = DecodeOtaStatus(EncodeOtaStatus(s));
    ASSERT_TRUE(out.ok()) << out.error().ToString();
    EXPECT_EQ(out->state, st);
    EXPECT_EQ(out->progress, 55u);
    EXPECT_EQ(out->err, s.err);
  }
  ExpectInvalid(DecodeOtaStatus(MB().Set("v", MB::Int(1)).Set("image", MB::Str("i")).Set("state", MB::Str("exploded"))
                                    .Build()),
                "key 'state' has unknown value 'exploded'");
  ExpectInvalid(DecodeOtaStatus(EncodeOtaStatus({"img", OtaState::kDownloading, 101, ""})),
                "key 'progress' must be in 0..100");
  ExpectInvalid(DecodeOtaStatus(MB().Set("v", MB::Int(1)).Set("state", MB::Str("failed")).Build()),
                "missing key 'image'");
}

TEST(Messages, LifecycleRoundTripAndSigningBytes) {
  LifecycleCommand cmd{LifecycleActionKind::kWipe, Filled(16, 12), 1700000000, Filled(64, 13)};
  auto out = DecodeLifecycleCommand(EncodeLifecycleCommand(cmd));
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(out->action, LifecycleActionKind::kWipe);
  EXPECT_EQ(out->nonce, cmd.nonce);
  EXPECT_EQ(out->ts, cmd.ts);
  EXPECT_EQ(out->sig, cmd.sig);

  Bytes a = LifecycleSigningBytes("dev-1", cmd);
  EXPECT_EQ(a, LifecycleSigningBytes("dev-1", *out));  // canonical, independent of encoding
  EXPECT_NE(a, LifecycleSigningBytes("dev-2", cmd));
  LifecycleCommand other = cmd;
  other.action = LifecycleActionKind::kRenew;
  EXPECT_NE(a, LifecycleSigningBytes("dev-1", other));
  other = cmd;
  other.ts += 1;
  EXPECT_NE(a, LifecycleSigningBytes("dev-1", other));
  other = cmd;
  other.nonce[0] ^= 1;
  EXPECT_NE(a, LifecycleSigningBytes("dev-1", other));
  other = cmd;
  other.sig = Filled(64, 99);
  EXPECT_EQ(a, LifecycleSigningBytes("dev-1", other));  // the signature is not signed
  // Length prefixes keep field boundaries unambiguous.
  const std::string domain = "edgetrust-lifecycle-v1";
  ASSERT_EQ(a.size(), domain.size() + 4 + 5 + 4 + 4 + 4 + 16 + 8);
  EXPECT_EQ(std::string(a.begin(), a.begin() + domain.size()), domain);

  for (LifecycleActionKind k : {LifecycleActionKind::kWipe, LifecycleActionKind::kReenroll, LifecycleActionKind::kRenew}) {
    EXPECT_EQ(ParseLifecycleActionKind(LifecycleActionKindName(k)), k);
  }
  auto base = [] {
    MB m;
    m.Set("v", MB::Int(1)).Set("action", MB::Str("renew")).Set("nonce", MB::Bin(Filled(8, 1)))
        .Set("ts", MB::Int(5)).Set("sig", MB::Bin({1}));
    return m;
  };
  ASSERT_TRUE(DecodeLifecycleCommand(base().Build()).ok());
  for (const char* key : {"action", "nonce", "ts", "sig"}) {
    ExpectInvalid(DecodeLifecycleCommand(base().Erase(key).Build()), std::string("missing key '") + key + "'");
  }
  ExpectInvalid(DecodeLifecycleCommand(base().Set("action", MB::Str("explode")).Build()), "unknown value 'explode'");
  ExpectInvalid(DecodeLifecycleCommand(base().Set("nonce", MB::Bin({1, 2})).Build()), "key 'nonce' must be 8..64 bytes");
  ExpectInvalid(DecodeLifecycleCommand(base().Set("ts", MB::Int(-1)).Build()), "key 'ts' must be in 0..");
  ExpectInvalid(DecodeLifecycleCommand(base().Set("ts", MB::Str("now")).Build()), "key 'ts' must be an integer");
  ExpectInvalid(DecodeLifecycleCommand(base().Set("sig", MB::Bin({})).Build()), "key 'sig' is empty");
}

TEST(Messages, GarbageNeverThrows) {
  const std::vector<Bytes> inputs = {
      {},
      {0xc1},                    // never-used type byte
      {0x81},                    // map of one with nothing in it (truncated)
      {0x91, 0x01},              // array, not a map
      {0x01},                    // a number
      {0xa3, 'a', 'b', 'c'},     // a string
      {0xdf, 0xff, 0xff, 0xff, 0xff},  // map claiming 4G entries
      {0xdd, 0x7f, 0xff, 0xff, 0xff},  // array claiming 2G entries
      {0xc6, 0xff, 0xff, 0xff, 0xff},  // bin claiming 4 GiB
      {0x80, 0x80},              // valid empty map followed by trailing bytes
      {0x80},                    // empty map: no v
  };
  for (const Bytes& in : inputs) {
    auto r = DecodeEnrollRequest(in);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().message;
    EXPECT_FALSE(DecodeStateMessage(in).ok());
    EXPECT_FALSE(DecodeOtaChunk(in).ok());
    EXPECT_FALSE(DecodeLifecycleCommand(in).ok());
    EXPECT_EQ(PeekRequestId(in), "");
  }
  // Deep nesting beyond the limit.
  Bytes deep(1000, 0x91);
  deep.push_back(0x01);
  EXPECT_FALSE(DecodeEnrollResponse(deep).ok());
  Bytes deep_map = {0x82, 0xa1, 'v', 0x01, 0xa1, 'x'};
  for (int i = 0; i < 100; ++i) deep_map.push_back(0x91);
  deep_map.push_back(0x01);
  EXPECT_FALSE(DecodeStateMessage(deep_map).ok());
}

TEST(Messages, EveryTruncationFails) {
  Bytes full = EncodeEnrollRequest(SampleEnroll());
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = DecodeEnrollRequest(ByteView(full.data(), n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded";
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
  Bytes offer = EncodeOtaOffer({"img", "1", 10, 4, Filled(32, 1), Filled(64, 2), "k"});
  for (size_t n = 0; n < offer.size(); ++n) EXPECT_FALSE(DecodeOtaOffer(ByteView(offer.data(), n)).ok());
}

TEST(Messages, RandomMutationsNeverCrash) {
  std::vector<Bytes> seeds = {
      EncodeEnrollRequest(SampleEnroll()),
      EncodeStateMessage({"1", "m", OtaProgress{"i", 1}}),
      EncodeOtaOffer({"img", "1", 10, 4, Filled(32, 1), Filled(64, 2), "k"}),
      EncodeLifecycleCommand({LifecycleActionKind::kRenew, Filled(8, 1), 5, Filled(8, 2)}),
  };
  uint32_t state = 99;
  auto rnd = [&] {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  };
  int decoded = 0;
  for (int round = 0; round < 20000; ++round) {
    Bytes b = seeds[round % seeds.size()];
    int flips = 1 + rnd() % 4;
    for (int f = 0; f < flips; ++f) b[rnd() % b.size()] = static_cast<uint8_t>(rnd());
    decoded += DecodeEnrollRequest(b).ok();
    decoded += DecodeStateMessage(b).ok();
    decoded += DecodeOtaOffer(b).ok();
    decoded += DecodeLifecycleCommand(b).ok();
    (void)PeekRequestId(b);
  }
  // Mutations inside binary fields leave the message valid, so some decode: the harness works.
  EXPECT_GT(decoded, 0);
}

TEST(Messages, Oversize) {
  EnrollRequest big = SampleEnroll();
  big.csr = Filled(kMaxEnrollPayloadBytes, 1);
  auto r = DecodeEnrollRequest(EncodeEnrollRequest(big));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(PeekRequestId(EncodeEnrollRequest(big)), "");

  StateMessage s{std::string(kMaxSmallPayloadBytes, 'x'), "m", std::nullopt};
  EXPECT_EQ(DecodeStateMessage(EncodeStateMessage(s)).error().code, ErrorCode::kResourceExhausted);

  OtaChunk c{"img", 0, Filled(kMaxOtaChunkDataBytes + 2048, 3)};
  EXPECT_EQ(DecodeOtaChunk(EncodeOtaChunk(c)).error().code, ErrorCode::kResourceExhausted);
  // Just over the data limit but under the payload limit: the bin limit refuses it.
  OtaChunk d{"img", 0, Filled(kMaxOtaChunkDataBytes + 1, 3)};
  EXPECT_FALSE(DecodeOtaChunk(EncodeOtaChunk(d)).ok());
}

TEST(Messages, PeekRequestId) {
  EXPECT_EQ(PeekRequestId(EnrollMap().Set("rid", MB::Str("abc")).Erase("csr").Build()), "abc");
  EXPECT_EQ(PeekRequestId(EnrollMap().Set("rid", MB::Int(4)).Build()), "");
  EXPECT_EQ(PeekRequestId(EnrollMap().Set("v", MB::Int(9)).Build()), "r-9");
}

TEST(Messages, WireErrorCodesAreDistinct) {
  const std::vector<std::string_view> codes = {
      kErrBadRequest,    kErrCsrInvalid,   kErrCsrMismatch, kErrBirthMismatch,
      kErrUnknownManufacturer, kErrNotAllowlisted, kErrClaimInvalid, kErrStateForbidden,
      kErrNoGroup,       kErrRateLimited,  kErrInternal};
  std::map<std::string_view, int> seen;
  for (auto c : codes) EXPECT_EQ(++seen[c], 1) << c;
}

}  // namespace
}  // namespace edgetrust::protocol
