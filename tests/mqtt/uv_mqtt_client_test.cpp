// UvMqttClient against a real mosquitto: plain TCP and mutual TLS (certificates made with the
// openssl command line), round trips with user properties, broker restarts, persistent
// sessions, many clients on one loop, and a loop that closes cleanly every time.
#include "edgetrust/mqtt/uv_mqtt_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "edgetrust/testing/mqtt_client.h"
#include "edgetrust/testing/process.h"

namespace edgetrust::mqtt {
namespace {

using edgetrust::testing::Broker;
using edgetrust::testing::FreeLoopbackPort;
using edgetrust::testing::RunCommand;
using edgetrust::testing::TempDir;
using edgetrust::testing::WriteFile;
using namespace std::chrono_literals;

void Openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all P-256.
void MakeCertificates(const TempDir& dir) {
  auto p = [&](const std::string& n) { return dir / n; };
  Openssl({"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p("ca.key")});
  Openssl({"req", "-x509", "-new", "-key", p("ca.key"), "-subj", "/CN=test-ca", "-days", "2",
           "-out", p("ca.pem")});
  WriteFile(p("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  WriteFile(p("client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const std::string who : {"server", "client"}) {
    Openssl({"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p(who + ".key")});
    Openssl({"req", "-new", "-key", p(who + ".key"), "-subj", "/CN=" + who, "-out",
             p(who + ".csr")});
    Openssl({"x509", "-req", "-in", p(who + ".csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", p(who + ".ext"), "-out",
             p(who + ".pem")});
    chmod(p(who + ".key").c_str(), 0644);  // the broker reads it as `mosquitto`
  }
}

// write(2) calls this process made so far (all threads; send(2) is not one of them).
uint64_t WriteCalls() {
  std::string io = edgetrust::testing::ReadFile("/proc/self/io");
  size_t p = io.find("syscw:");
  return p == std::string::npos ? 0 : std::stoull(io.substr(p + 6));
}

struct TcpSent {
  uint32_t segments = 0;
  uint64_t bytes = 0;
};

// This process's TCP sockets connected to `port` on 127.0.0.1, each with what it sent.
std::map<int, TcpSent> SentTo(int port) {
  std::map<int, TcpSent> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(e.path().filename().string());
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 || peer.sin_family != AF_INET ||
        ntohs(peer.sin_port) != port) {
      continue;
    }
    // glibc's tcp_info stops at tcpi_total_retrans; Linux (4.19+) goes on with these.
    struct {
      tcp_info base;
      uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
      uint32_t segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out;
      uint64_t delivery_rate, busy_time, rwnd_limited, sndbuf_limited;
      uint32_t delivered, delivered_ce;
      uint64_t bytes_sent;
    } info{};
    len = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && len == sizeof info) {
      out[fd] = {info.segs_out, info.bytes_sent};
    }
  }
  return out;
}

size_t OpenDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// The loop lives in the test thread; RunUntil turns it until a condition holds.
class UvMqttClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &waker_);
    waker_.data = this;
    MakeCertificates(dir_);
    plain_port_ = FreeLoopbackPort();
    tls_port_ = FreeLoopbackPort();
    broker_ = Broker::Start(dir_.path(), BrokerConfig(), {plain_port_, tls_port_});
  }

  void TearDown() override {
    clients_.clear();  // destroying clients is always safe; their handles close on the loop
    uv_close(reinterpret_cast<uv_handle_t*>(&waker_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  std::string BrokerConfig() {
    return "per_listener_settings true\n"
           "listener " + std::to_string(plain_port_) + " 127.0.0.1\n"
           "allow_anonymous true\n"
           "listener " + std::to_string(tls_port_) + " 127.0.0.1\n"
           "allow_anonymous true\n"
           "cafile " + dir_ / "ca.pem" + "\n"
           "certfile " + dir_ / "server.pem" + "\n"
           "keyfile " + dir_ / "server.key" + "\n"
           "require_certificate true\n"
           "persistence false\n"
           "max_keepalive 60\n";
  }

  bool RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    if (done()) return true;
    done_ = &done;
    deadline_ = uv_now(&loop_) + static_cast<uint64_t>(timeout.count());
    uv_timer_start(&waker_, [](uv_timer_t* t) {
      auto* self = static_cast<UvMqttClientTest*>(t->data);
      uv_update_time(t->loop);
      if ((*self->done_)() || uv_now(t->loop) >= self->deadline_) uv_stop(t->loop);
    }, 2, 2);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_timer_stop(&waker_);
    done_ = nullptr;
    return done();
  }

  struct Probe {
    int connects = 0;
    int refusals = 0;
    int disconnects = 0;
    int last_disconnect = -1;
    bool closed = false;
    std::vector<Message> messages;
    std::map<int, std::vector<int>> subacks;
    std::map<int, int> pubacks;
    bool keep = true;    // what on_received answers (hold_acks)
    bool later = false;  // answer kLater instead, and note the hold
    std::vector<uint64_t> holds;
    int received_batches = 0;
  };

  UvMqttClient* NewClient(ClientOptions o, Probe* probe) {
    ClientCallbacks cb;
    cb.on_connect = [probe](int reason) { reason == 0 ? probe->connects++ : probe->refusals++; };
    cb.on_disconnect = [probe](int reason) {
      probe->disconnects++;
      probe->last_disconnect = reason;
    };
    cb.on_message = [probe](const Message& m) { probe->messages.push_back(m); };
    cb.on_subscribe = [probe](int mid, const std::vector<int>& g) { probe->subacks[mid] = g; };
    cb.on_publish_ack = [probe](int mid, int reason) { probe->pubacks[mid] = reason; };
    cb.on_closed = [probe] { probe->closed = true; };
    cb.on_received = [probe](uint64_t hold) {
      probe->received_batches++;
      if (probe->later) {
        probe->holds.push_back(hold);
        return Received::kLater;
      }
      return probe->keep ? Received::kAcknowledge : Received::kDrop;
    };
    auto c = UvMqttClient::Create(&loop_, std::move(o), std::move(cb));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().ToString());
    if (!c.ok()) return nullptr;
    clients_.push_back(std::move(c).value());
    return clients_.back().get();
  }

  ClientOptions Plain(const std::string& id) {
    ClientOptions o;
    o.port = plain_port_;
    o.client_id = id;
    o.reconnect_min = 100ms;
    o.reconnect_max = 500ms;
    return o;
  }
  ClientOptions Tls(const std::string& id) {
    ClientOptions o = Plain(id);
    o.port = tls_port_;
    o.ca = dir_ / "ca.pem";
    o.cert = dir_ / "client.pem";
    o.key = dir_ / "client.key";
    return o;
  }

  // Subscribes and waits for SUBACK.
  void SubscribeAndWait(UvMqttClient* c, Probe* p, const std::string& filter, int qos) {
    auto mid = c->Subscribe(filter, qos);
    ASSERT_TRUE(mid.ok()) << mid.error().ToString();
    ASSERT_TRUE(RunUntil([&] { return p->subacks.count(*mid) > 0; }));
    EXPECT_EQ(p->subacks[*mid], std::vector<int>{qos});
  }

  // A new client, connected; *fd: its socket (the one to the broker this process did not have
  // before).
  UvMqttClient* Connected(ClientOptions o, Probe* p, int* fd) {
    const int port = o.port;
    const std::map<int, TcpSent> others = SentTo(port);
    UvMqttClient* c = NewClient(std::move(o), p);
    EXPECT_TRUE(c->Start().ok());
    EXPECT_TRUE(RunUntil([&] { return c->connected(); }));
    *fd = -1;
    for (const auto& [f, sent] : SentTo(port)) {
      if (!others.count(f)) *fd = f;
    }
    return c;
  }

  // A plain client, connected and subscribed to `filter`.
  UvMqttClient* Subscriber(const std::string& id, Probe* p, const std::string& filter, int qos) {
    UvMqttClient* c = NewClient(Plain(id), p);
    EXPECT_TRUE(c->Start().ok());
    EXPECT_TRUE(RunUntil([&] { return c->connected(); }));
    SubscribeAndWait(c, p, filter, qos);
    return c;
  }

  // The first `n` messages are `prefix`/i carrying i, in order.
  // A QoS 0 subscriber to `prefix`/# (plain) and a connected publisher made from `o`; *fd: the
  // publisher's socket.
  UvMqttClient* PublisherAndReceiver(ClientOptions o, const std::string& prefix, Probe* pp,
                                     Probe* rp, int* fd) {
    Subscriber(prefix + "-receiver", rp, prefix + "/#", 0);
    return Connected(std::move(o), pp, fd);
  }

  // A publish right before Stop (and its DISCONNECT) still arrives: the receiver's probe then
  // holds `received` messages, and the publisher closed cleanly.
  void PublishThenStop(UvMqttClient* publisher, const Probe& pp, const Probe& rp,
                       const std::string& topic, size_t received) {
    ASSERT_TRUE(publisher->Publish(topic, AsBytes("last"), 0).ok());
    publisher->Stop();
    ASSERT_TRUE(RunUntil([&] { return pp.closed && rp.messages.size() == received; }))
        << "the publish before the DISCONNECT arrived: " << (rp.messages.size() == received);
    EXPECT_EQ(pp.last_disconnect, 0);
  }

  static void ExpectNumbered(const std::vector<Message>& messages, const std::string& prefix, int n) {
    ASSERT_GE(messages.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      const Message& m = messages[static_cast<size_t>(i)];
      ASSERT_EQ(m.topic, prefix + "/" + std::to_string(i));
      ASSERT_EQ(std::string(m.payload.begin(), m.payload.end()), std::to_string(i));
    }
  }

  uv_loop_t loop_{};
  uv_timer_t waker_{};
  const std::function<bool()>* done_ = nullptr;
  uint64_t deadline_ = 0;
  TempDir dir_;
  int plain_port_ = 0;
  int tls_port_ = 0;
  Broker broker_;
  std::vector<std::unique_ptr<UvMqttClient>> clients_;
};


TEST_F(UvMqttClientTest, PlainRoundTripWithUserProperties) {
  Probe p;
  UvMqttClient* c = NewClient(Plain("plain-1"), &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }));
  EXPECT_EQ(p.connects, 1);
  SubscribeAndWait(c, &p, "t/+/x", 1);

  const std::string body = std::string("bin\0ary", 7);
  auto mid = c->Publish("t/a/x", AsBytes(body), 1, false,
                        {{"et-test", "one"}, {"et-test", "two"}, {"k", "v"}});
  ASSERT_TRUE(mid.ok()) << mid.error().ToString();
  ASSERT_TRUE(RunUntil([&] { return !p.messages.empty() && p.pubacks.count(*mid); }));
  const Message& m = p.messages[0];
  EXPECT_EQ(m.topic, "t/a/x");
  EXPECT_EQ(std::string(m.payload.begin(), m.payload.end()), body);
  EXPECT_EQ(m.qos, 1);
  ASSERT_EQ(m.user_properties.size(), 3u);
  EXPECT_EQ(m.user_properties[0].value, "one");
  EXPECT_EQ(m.user_properties[1].value, "two");
  EXPECT_EQ(FindUserProperty(m.user_properties, "k"), "v");
  EXPECT_EQ(FindUserProperty(m.user_properties, "absent"), std::nullopt);
  EXPECT_EQ(p.pubacks[*mid], 0);

  c->Stop();
  ASSERT_TRUE(RunUntil([&] { return p.closed; }));
  EXPECT_EQ(p.last_disconnect, 0);
  EXPECT_TRUE(c->closed());
  EXPECT_FALSE(c->Publish("t/a/x", AsBytes("late")).ok());
}

// A burst far larger than the socket takes at once (40 x 1 MiB at QoS 0), published from inside
// a callback, so libmosquitto only queues it and the loop writes it; the publisher reads
// nothing, so no read of its own drives libmosquitto's writes. Once the socket is full the client
// must watch it for writability and go on. Every message arrives whole and in order at a second
// client, plain and over TLS.
TEST_F(UvMqttClientTest, BurstLargerThanTheSocketTakesArrivesWhole) {
  constexpr int kMessages = 40;
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    const std::string id = tls ? "burst-tls" : "burst-plain";
    Probe rp;
    UvMqttClient* receiver = Subscriber(id + "-receiver", &rp, id + "/#", 0);

    UvMqttClient* publisher = nullptr;
    int published = 0;
    bool closed = false;
    ClientCallbacks cb;
    cb.on_connect = [&](int reason) {
      if (reason != 0) return;
      for (int i = 0; i < kMessages; ++i) {
        std::string body(size_t{1} << 20, static_cast<char>('a' + i % 26));
        std::memcpy(body.data(), &i, sizeof i);
        if (publisher->Publish(id + "/" + std::to_string(i), AsBytes(body), 0).ok()) ++published;
      }
    };
    cb.on_closed = [&] { closed = true; };
    auto created = UvMqttClient::Create(&loop_, tls ? Tls(id) : Plain(id), std::move(cb));
    ASSERT_TRUE(created.ok()) << created.error().ToString();
    clients_.push_back(std::move(created).value());
    publisher = clients_.back().get();
    ASSERT_TRUE(publisher->Start().ok());

    ASSERT_TRUE(RunUntil([&] { return rp.messages.size() == kMessages; }, 60s))
        << rp.messages.size() << " of " << published << " messages arrived";
    EXPECT_EQ(published, kMessages);
    for (int i = 0; i < kMessages; ++i) {
      const Message& m = rp.messages[static_cast<size_t>(i)];
      EXPECT_EQ(m.topic, id + "/" + std::to_string(i));
      ASSERT_EQ(m.payload.size(), size_t{1} << 20);
      int n = -1;
      std::memcpy(&n, m.payload.data(), sizeof n);
      EXPECT_EQ(n, i);
      EXPECT_EQ(m.payload.back(), static_cast<uint8_t>('a' + i % 26));
    }
    publisher->Stop();
    receiver->Stop();
    ASSERT_TRUE(RunUntil([&] { return closed && rp.closed; }));
  }
}

// read(2) calls this process made so far (all threads).
uint64_t ReadCalls() {
  std::string io = edgetrust::testing::ReadFile("/proc/self/io");
  size_t p = io.find("syscr:");
  return p == std::string::npos ? 0 : std::stoull(io.substr(p + 6));
}

// libmosquitto alone reads a plain socket a few bytes at a time (a small PUBLISH is three
// read(2) calls); the client gives it what one read(2) took. 2000 small messages arriving
// together must cost fewer reads than messages, and arrive whole and in order.
TEST_F(UvMqttClientTest, PlainReadsTakeWhatTheSocketHolds) {
  constexpr int kMessages = 2000;
  Probe rp;
  Subscriber("small-receiver", &rp, "small/#", 0);

  UvMqttClient* publisher = nullptr;
  ClientCallbacks cb;
  cb.on_connect = [&](int reason) {
    for (int i = 0; reason == 0 && i < kMessages; ++i) {
      EXPECT_TRUE(publisher->Publish("small/" + std::to_string(i), AsBytes(std::to_string(i)), 0).ok());
    }
  };
  auto created = UvMqttClient::Create(&loop_, Plain("small-publisher"), std::move(cb));
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  clients_.push_back(std::move(created).value());
  publisher = clients_.back().get();

  const uint64_t reads_before = ReadCalls();
  ASSERT_TRUE(publisher->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return rp.messages.size() == kMessages; }, 30s))
      << rp.messages.size() << " of " << kMessages << " arrived";
  const uint64_t reads = ReadCalls() - reads_before;
  // Buffered: 200-650 calls here, depending on how the broker's writes and ours interleave;
  // unbuffered: three per message, over 6000.
  EXPECT_LT(reads, static_cast<uint64_t>(kMessages)) << reads << " read(2) calls";
  ExpectNumbered(rp.messages, "small", kMessages);

  // A payload larger than the buffer is read straight into place; when the socket then has
  // nothing more (EAGAIN), reading stops until the poll says otherwise (it once went on asking
  // until the 4096-packet cap: 4095 more read(2) calls per such message).
  const std::string big(64 << 10, 'b');
  const uint64_t reads_before_big = ReadCalls();
  ASSERT_TRUE(publisher->Publish("small/big", AsBytes(big), 0).ok());
  ASSERT_TRUE(RunUntil([&] { return rp.messages.size() == kMessages + 1; }));
  EXPECT_EQ(rp.messages.back().payload.size(), big.size());
  EXPECT_LT(ReadCalls() - reads_before_big, 100u);
}

// libmosquitto writes each packet with its own write(2) (TCP_NODELAY: on a real uplink, often a
// packet on the wire per message). What a plain connection is given to send in one turn of the
// loop goes out together: 2000 publishes made one after another, outside any callback, cost no
// write(2) per message and leave in a few segments, whole and in order; and a DISCONNECT right
// after a publish does not lose that publish.
TEST_F(UvMqttClientTest, PlainWritesGoOutTogether) {
  constexpr int kMessages = 2000;
  Probe rp, pp;
  int fd = -1;
  UvMqttClient* publisher = PublisherAndReceiver(Plain("together-publisher"), "together", &pp, &rp, &fd);
  ASSERT_GE(fd, 0) << "the publisher's socket";
  const uint32_t segments_before = SentTo(plain_port_).at(fd).segments;

  const uint64_t writes_before = WriteCalls();
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(publisher->Publish("together/" + std::to_string(i), AsBytes(std::to_string(i)), 0).ok());
  }
  ASSERT_TRUE(RunUntil([&] { return rp.messages.size() == kMessages; }, 30s))
      << rp.messages.size() << " of " << kMessages << " arrived";
  const uint64_t writes = WriteCalls() - writes_before;
  const uint32_t segments = SentTo(plain_port_).at(fd).segments - segments_before;
  // One write(2) per packet: 2000 of them, which Linux's autocorking still sent as 24-38
  // segments here. Together: no write(2) (one send(2)), 2 segments; QoS 0, so the broker sends
  // nothing back that the publisher's TCP would acknowledge with segments of its own.
  EXPECT_LT(writes, 100u) << writes << " write(2) calls";
  EXPECT_LE(segments, 10u) << segments << " TCP segments";
  ExpectNumbered(rp.messages, "together", kMessages);

  PublishThenStop(publisher, pp, rp, "together/last", kMessages + 1);
}

// libmosquitto makes one SSL_write per packet, and OpenSSL a record of each: 22 bytes more per
// packet, and for the receiver a decryption and (OpenSSL without read-ahead, as the broker runs
// it) two read(2) calls. What a TLS connection is given in one turn of the loop is encrypted
// together, in records of up to 16 KiB: 2000 publishes carry the overhead of a few records and
// arrive whole and in order; a packet too large to keep (40 KiB) goes in its place in the
// order; and a publish right before a DISCONNECT still arrives.
TEST_F(UvMqttClientTest, TlsPacketsShareRecords) {
  constexpr int kMessages = 2000;
  constexpr size_t kRecordOverhead = 22;  // TLS 1.3: header 5, content type 1, AEAD tag 16
  Probe rp, pp;
  int fd = -1;
  UvMqttClient* publisher = PublisherAndReceiver(Tls("records-publisher"), "records", &pp, &rp, &fd);
  ASSERT_GE(fd, 0) << "the publisher's socket";
  const uint64_t bytes_before = SentTo(tls_port_).at(fd).bytes;

  size_t mqtt_bytes = 0;  // the PUBLISH packets: header 2-3, topic 2 + n, properties 1, payload
  const std::string big(40 << 10, 'b');
  for (int i = 0; i < kMessages; ++i) {
    const std::string topic = "records/" + std::to_string(i);
    const std::string payload = std::to_string(i);
    ASSERT_TRUE(publisher->Publish(topic, AsBytes(payload), 0).ok());
    mqtt_bytes += 2 + 2 + topic.size() + 1 + payload.size();
    if (i == kMessages / 2 - 1) {
      ASSERT_TRUE(publisher->Publish("records/big", AsBytes(big), 0).ok());
      mqtt_bytes += 4 + 2 + 11 + 1 + big.size();
    }
  }
  ASSERT_TRUE(RunUntil([&] { return rp.messages.size() == kMessages + 1; }, 30s))
      << rp.messages.size() << " of " << kMessages + 1 << " arrived";
  const uint64_t sent = SentTo(tls_port_).at(fd).bytes - bytes_before;
  // A record per packet: 44 KB over the packets' own bytes. Together: 4 records of the 40 KiB
  // packet, and 1 per 16 KiB of the rest.
  EXPECT_GE(sent, mqtt_bytes);
  EXPECT_LT(sent - mqtt_bytes, kMessages * kRecordOverhead / 10)
      << sent << " bytes sent for " << mqtt_bytes << " bytes of packets";
  std::vector<Message> numbered = rp.messages;
  ASSERT_EQ(numbered[kMessages / 2].topic, "records/big") << "the large packet in its place";
  EXPECT_EQ(numbered[kMessages / 2].payload.size(), big.size());
  numbered.erase(numbered.begin() + kMessages / 2);
  ExpectNumbered(numbered, "records", kMessages);

  PublishThenStop(publisher, pp, rp, "records/last", kMessages + 2);
}

// A client that stops before the broker has answered it: SUBSCRIBEs, a PUBLISH and the
// DISCONNECT go out in one turn and the client closes. Were its socket closed outright, the
// broker's first SUBACK would meet a closed socket, the reset that answers it would fail the
// broker's second SUBACK, and the broker would drop the connection before it read the PUBLISH
// (as a device agent stopped right after connecting lost its state message). The client closes
// its sending side and reads what the broker still sends until the broker closes: every
// publish arrives, over TLS and plain, and each client's closing is clean.
TEST_F(UvMqttClientTest, StopBeforeTheBrokerAnswersLosesNothingSentBeforeIt) {
  constexpr int kRounds = 10;
  Probe rp;
  Subscriber("answers-receiver", &rp, "answers/#", 0);
  const size_t descriptors = OpenDescriptors();
  size_t expected = 0;
  for (const bool tls : {true, false}) {
    for (int round = 0; round < kRounds; ++round) {
      SCOPED_TRACE((tls ? "tls round " : "plain round ") + std::to_string(round));
      const std::string id = (tls ? "answers-tls-" : "answers-plain-") + std::to_string(round);
      Probe pp;
      int fd = -1;
      UvMqttClient* c = Connected(tls ? Tls(id) : Plain(id), &pp, &fd);
      for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(c->Subscribe(id + "/in/" + std::to_string(i), 1).ok());
      }
      ASSERT_TRUE(c->Publish("answers/" + id, AsBytes(id), 0).ok());
      c->Stop();
      ++expected;
      ASSERT_TRUE(RunUntil([&] { return pp.closed && rp.messages.size() == expected; }, 5s))
          << "closed " << pp.closed << ", " << rp.messages.size() << " of " << expected
          << " publishes arrived";
      EXPECT_EQ(rp.messages.back().topic, "answers/" + id);
      EXPECT_EQ(pp.last_disconnect, 0);
      // The socket still lingers, and the next client's socket gets the number this one had:
      // nothing of the lingering socket may reach the new client's watch.
      EXPECT_EQ(pp.connects, 1);
      EXPECT_EQ(pp.disconnects, 1);
    }
  }
  EXPECT_TRUE(RunUntil([&] { return OpenDescriptors() == descriptors; }, 3s))
      << "a lingering socket was not closed";
}

// A stopping client's socket lingers after libmosquitto has closed its descriptor, and the next
// socket the process opens gets that number. What the lingering socket still reports must not
// reach the watch of that next socket: an error there ends a healthy connection. The broker is
// stopped while the first client stops, then killed with the client's SUBSCRIBE and DISCONNECT
// unread, so the kernel resets the lingering socket once a client of a second broker has the
// number.
TEST_F(UvMqttClientTest, ALingeringSocketsEventsNeverReachTheSocketThatGetsItsNumber) {
  const int second_port = FreeLoopbackPort();
  Broker second = Broker::Start(dir_.path(),
                                "listener " + std::to_string(second_port) + " 127.0.0.1\n"
                                "allow_anonymous true\npersistence false\n",
                                {second_port});
  Probe ap;
  int afd = -1;
  UvMqttClient* a = Connected(Plain("linger-a"), &ap, &afd);
  ASSERT_GE(afd, 0);
  broker_.process().Signal(SIGSTOP);
  ASSERT_TRUE(a->Subscribe("linger/a", 1).ok());
  a->Stop();
  ASSERT_TRUE(RunUntil([&] { return ap.closed; }, 5s));

  Probe bp;
  int bfd = -1;
  ClientOptions o = Plain("linger-b");
  o.port = second_port;
  UvMqttClient* b = Connected(o, &bp, &bfd);
  ASSERT_TRUE(b->connected());
  EXPECT_EQ(bfd, afd) << "the new socket did not get the old number: this run shows nothing";
  broker_.process().Signal(SIGKILL);
  RunUntil([] { return false; }, 1500ms);  // the reset reaches the lingering socket; it ends
  EXPECT_EQ(bp.disconnects, 0) << "the lingering socket's reset ended the new connection";
  ASSERT_TRUE(b->connected());
  SubscribeAndWait(b, &bp, "linger/b", 1);
  ASSERT_TRUE(b->Publish("linger/b", AsBytes("alive"), 1).ok());
  ASSERT_TRUE(RunUntil([&] { return !bp.messages.empty(); }));
}

// As soon as CONNACK arrives, libmosquitto sends again everything that awaits an
// acknowledgement, with libssl's own SSL_write: the connection's writer is not there yet. When
// that burst fills the socket, OpenSSL keeps a record and wants the same write again. The writer
// installed just after must let that write through to OpenSSL, not keep it to encrypt later
// (OpenSSL would refuse the later write as a bad retry, and the connection would die at every
// reconnect). 600 publishes of 16,000 bytes (each small enough to be kept) are in flight while
// the broker is stopped, the connection breaks, and when the broker is back every message
// arrives after that one reconnect.
TEST_F(UvMqttClientTest, InFlightResentAfterReconnectGetsThroughOverTls) {
  constexpr int kMessages = 600;
  broker_.process().Stop();
  broker_ = Broker::Start(dir_.path(), BrokerConfig() + "max_inflight_messages 1000\n",
                          {plain_port_, tls_port_});
  Probe rp;
  Subscriber("burst-receiver", &rp, "burst/#", 1);
  Probe pp;
  int fd = -1;
  ClientOptions o = Tls("burst-publisher");
  o.send_maximum = 1000;
  UvMqttClient* publisher = Connected(o, &pp, &fd);
  ASSERT_GE(fd, 0) << "the publisher's socket";

  broker_.process().Signal(SIGSTOP);
  const std::string filler(16000, 'p');
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(publisher->Publish("burst/" + std::to_string(i), AsBytes(filler), 1).ok());
  }
  RunUntil([] { return false; }, 300ms);  // the socket takes what it can, then is full
  ASSERT_EQ(shutdown(fd, SHUT_RDWR), 0);  // the connection breaks while the broker is stopped
  ASSERT_TRUE(RunUntil([&] { return pp.disconnects == 1; })) << "the break is seen";
  broker_.process().Signal(SIGCONT);

  std::set<std::string> arrived;
  ASSERT_TRUE(RunUntil([&] {
    for (const Message& m : rp.messages) arrived.insert(m.topic);
    return arrived.size() == kMessages;
  }, 60s)) << arrived.size() << " of " << kMessages << " arrived; disconnects " << pp.disconnects;
  EXPECT_EQ(pp.disconnects, 1) << "one reconnect did it";
  EXPECT_TRUE(publisher->connected());
}

// A write that fails under a publish is the connection's failure, not the message's: callers
// such as the forwarder drop a message whose publish says kInvalidArgument ("can never be
// sent"). The socket's sending side is shut, a publish fills the client's buffer past its cap,
// and the next one, which must then write, fails as unavailable; the connection is then lost.
TEST_F(UvMqttClientTest, APublishOnAFailedSocketIsUnavailable) {
  Probe p;
  int fd = -1;
  UvMqttClient* c = Connected(Plain("failing"), &p, &fd);
  ASSERT_GE(fd, 0) << "the client's socket";
  ASSERT_EQ(shutdown(fd, SHUT_WR), 0);

  const std::string big(300 << 10, 'x');  // more than the client keeps before it must write
  ASSERT_TRUE(c->Publish("fail/1", AsBytes(big), 1).ok());
  auto second = c->Publish("fail/2", AsBytes("x"), 1);
  ASSERT_FALSE(second.ok()) << "a publish on a socket that cannot send";
  EXPECT_EQ(second.error().code, ErrorCode::kUnavailable) << second.error().ToString();
  ASSERT_TRUE(RunUntil([&] { return p.disconnects > 0; })) << "the connection is lost";
}

TEST_F(UvMqttClientTest, MutualTlsRoundTripAndMessagesFromAnotherClient) {
  Probe p;
  UvMqttClient* c = NewClient(Tls("tls-1"), &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }));
  SubscribeAndWait(c, &p, "down/#", 0);

  // A message from a different connection (the blocking test client) arrives too.
  edgetrust::testing::TestClient other("other");
  ASSERT_EQ(other.Connect(plain_port_, {}), 0);
  ASSERT_EQ(other.Publish("down/1", "hello", 0, false, {{"et-cert-sha256", "ab"}}), 0);
  ASSERT_TRUE(RunUntil([&] { return !p.messages.empty(); }));
  EXPECT_EQ(p.messages[0].topic, "down/1");
  EXPECT_EQ(FindUserProperty(p.messages[0].user_properties, "et-cert-sha256"), "ab");

  // And one of ours reaches the other client.
  ASSERT_EQ(other.Subscribe("up/#", 1), 1);
  ASSERT_TRUE(c->Publish("up/1", AsBytes("x"), 1, false, {{"a", "b"}}).ok());
  bool got = false;
  // The blocking client waits on its own thread; keep our loop turning meanwhile.
  ASSERT_TRUE(RunUntil([&] {
    if (auto m = other.WaitMessage(1ms)) got = m->topic == "up/1" && m->user_properties["a"] == "b";
    return got;
  }));
}

TEST_F(UvMqttClientTest, TlsWithoutClientCertificateIsRefusedAndRetried) {
  Probe p;
  ClientOptions o = Tls("nocert");
  o.cert.clear();
  o.key.clear();
  UvMqttClient* c = NewClient(o, &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return p.disconnects >= 2; }));  // refused, then refused again
  EXPECT_EQ(p.connects, 0);
  EXPECT_FALSE(c->connected());
}

TEST_F(UvMqttClientTest, WrongCaIsRefused) {
  Probe p;
  ClientOptions o = Tls("wrongca");
  o.ca = dir_ / "client.pem";  // not the CA that signed the broker's certificate
  UvMqttClient* c = NewClient(o, &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return p.disconnects >= 1; }));
  EXPECT_EQ(p.connects, 0);
}

TEST_F(UvMqttClientTest, BadOptionsAreRefusedAtCreate) {
  ClientOptions o = Plain("");
  EXPECT_FALSE(UvMqttClient::Create(&loop_, o, {}).ok());
  o = Tls("x");
  o.key = dir_ / "missing.key";
  EXPECT_FALSE(UvMqttClient::Create(&loop_, o, {}).ok());
  o = Plain("x");
  o.protocol = 3;
  EXPECT_FALSE(UvMqttClient::Create(&loop_, o, {}).ok());
  o = Plain("x");
  o.send_maximum = 70000;
  EXPECT_FALSE(UvMqttClient::Create(&loop_, o, {}).ok());
}

// With read_pause the socket is left unread for that long after each read: an acknowledgement
// that is already there waits for the pause to end (or for ReadSoon), and then arrives.
TEST_F(UvMqttClientTest, ReadPauseLeavesAcknowledgementsUnreadUntilItEndsOrReadSoon) {
  ClientOptions o = Plain("paused");
  o.read_pause = 1500ms;
  o.send_maximum = 100;
  Probe p;
  UvMqttClient* c = NewClient(o, &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }));  // the CONNACK's read starts a pause

  auto first = c->Publish("paused/1", AsBytes("1"), 1);
  ASSERT_TRUE(first.ok());
  const uint64_t published = uv_now(&loop_);
  ASSERT_TRUE(RunUntil([&] { return p.pubacks.count(*first) > 0; }, 5s));
  uv_update_time(&loop_);
  // The broker answers within milliseconds; the answer was read only once the pause was over.
  EXPECT_GE(uv_now(&loop_) - published, 1000u);

  auto second = c->Publish("paused/2", AsBytes("2"), 1);  // after the read above: paused again
  ASSERT_TRUE(second.ok());
  uv_update_time(&loop_);
  const uint64_t asked = uv_now(&loop_);
  c->ReadSoon();
  ASSERT_TRUE(RunUntil([&] { return p.pubacks.count(*second) > 0; }, 5s));
  uv_update_time(&loop_);
  EXPECT_LT(uv_now(&loop_) - asked, 1000u);
}

TEST_F(UvMqttClientTest, ReconnectsAfterBrokerRestart) {
  Probe p;
  UvMqttClient* c = NewClient(Tls("restart-1"), &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }));

  broker_.process().Stop();
  ASSERT_TRUE(RunUntil([&] { return !c->connected(); }));
  EXPECT_GE(p.disconnects, 1);
  // Let it fail a few attempts against the dead port.
  RunUntil([] { return false; }, 300ms);
  broker_ = Broker::Start(dir_.path(), BrokerConfig(), {plain_port_, tls_port_});
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }, 15s))
      << "disconnects " << p.disconnects << " last " << p.last_disconnect << " refusals "
      << p.refusals << "\n" << broker_.Log();
  EXPECT_EQ(p.connects, 2);
  SubscribeAndWait(c, &p, "again", 0);
  ASSERT_TRUE(c->Publish("again", AsBytes("1")).ok());
  ASSERT_TRUE(RunUntil([&] { return !p.messages.empty(); }));
}

TEST_F(UvMqttClientTest, PersistentSessionKeepsSubscriptionsAcrossConnections) {
  ClientOptions o = Tls("session-1");
  o.clean_start = false;
  o.session_expiry = 300;
  Probe p1;
  UvMqttClient* c1 = NewClient(o, &p1);
  ASSERT_TRUE(c1->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c1->connected(); }));
  SubscribeAndWait(c1, &p1, "queued/#", 1);
  c1->Stop();
  ASSERT_TRUE(RunUntil([&] { return p1.closed; }));

  edgetrust::testing::TestClient other("pub");
  ASSERT_EQ(other.Connect(plain_port_, {}), 0);
  ASSERT_EQ(other.Publish("queued/1", "while-away", 1), 0);

  // Same id, no new SUBSCRIBE: the broker kept the session, so the message arrives.
  Probe p2;
  UvMqttClient* c2 = NewClient(o, &p2);
  ASSERT_TRUE(c2->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return !p2.messages.empty(); }));
  EXPECT_EQ(std::string(p2.messages[0].payload.begin(), p2.messages[0].payload.end()),
            "while-away");
}

// hold_acks: a message is acknowledged only once on_received kept it. Refused, the connection
// drops unacknowledged and the broker delivers the message again; kept, it is acknowledged and
// never comes back, not even to a new connection of the same session.
TEST_F(UvMqttClientTest, HeldAcknowledgementsAreWrittenOnlyForKeptMessages) {
  ClientOptions o = Tls("held-1");
  o.clean_start = false;
  o.session_expiry = 300;
  o.hold_acks = true;
  Probe p1;
  UvMqttClient* c1 = NewClient(o, &p1);
  ASSERT_TRUE(c1->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c1->connected(); }));
  SubscribeAndWait(c1, &p1, "held/#", 1);

  edgetrust::testing::TestClient other("pub-held");
  ASSERT_EQ(other.Connect(plain_port_, {}), 0);
  p1.keep = false;
  ASSERT_EQ(other.Publish("held/1", "first", 1), 0);
  // Refused twice: delivered, dropped, delivered again after each reconnect.
  ASSERT_TRUE(RunUntil([&] { return p1.messages.size() >= 3; }));
  EXPECT_GE(p1.disconnects, 2);
  for (const Message& m : p1.messages) EXPECT_EQ(m.topic, "held/1");
  p1.keep = true;
  const size_t before = p1.messages.size();
  ASSERT_TRUE(RunUntil([&] { return p1.messages.size() > before && c1->connected(); }));
  const int disconnects = p1.disconnects;
  c1->Stop();
  ASSERT_TRUE(RunUntil([&] { return p1.closed; }));
  EXPECT_EQ(p1.disconnects, disconnects + 1);  // only the Stop

  ASSERT_EQ(other.Publish("held/2", "marker", 1), 0);
  Probe p2;
  UvMqttClient* c2 = NewClient(o, &p2);
  ASSERT_TRUE(c2->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return !p2.messages.empty(); }));
  EXPECT_EQ(p2.messages[0].topic, "held/2") << "an acknowledged message came back";
  EXPECT_GE(p2.received_batches, 1);
}

// kLater: while a read's messages are held, nothing more is read and nothing acknowledged; an
// answer for another hold changes nothing; Resolve(true) acknowledges (the message never comes
// back), Resolve(false) drops the connection and the broker delivers the message again.
TEST_F(UvMqttClientTest, HeldUntilResolvedThenAcknowledgedOrDropped) {
  ClientOptions o = Tls("held-later");
  o.clean_start = false;
  o.session_expiry = 300;
  o.hold_acks = true;
  Probe p;
  UvMqttClient* c = NewClient(o, &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }));
  SubscribeAndWait(c, &p, "later/#", 1);
  p.later = true;

  edgetrust::testing::TestClient other("pub-later");
  ASSERT_EQ(other.Connect(plain_port_, {}), 0);
  ASSERT_EQ(other.Publish("later/a", "a", 1), 0);
  ASSERT_TRUE(RunUntil([&] { return p.holds.size() == 1; }));
  ASSERT_EQ(other.Publish("later/b", "b", 1), 0);
  RunUntil([] { return false; }, 300ms);
  ASSERT_EQ(p.messages.size(), 1u) << "read on while a hold was open";
  c->Resolve(p.holds[0] + 1, true);  // not the open hold
  RunUntil([] { return false; }, 200ms);
  ASSERT_EQ(p.messages.size(), 1u) << "another hold's answer ended this one";

  c->Resolve(p.holds[0], true);
  ASSERT_TRUE(RunUntil([&] { return p.holds.size() == 2; }));
  EXPECT_EQ(p.messages.back().topic, "later/b");
  const int disconnects = p.disconnects;
  c->Resolve(p.holds[1], false);
  ASSERT_TRUE(RunUntil([&] { return p.disconnects > disconnects; }));
  p.later = false;
  ASSERT_TRUE(RunUntil([&] { return p.messages.size() >= 3 && c->connected(); }));
  EXPECT_EQ(p.messages[2].topic, "later/b") << "the dropped message was not delivered again";
  RunUntil([] { return false; }, 300ms);
  for (size_t i = 1; i < p.messages.size(); ++i) {
    EXPECT_NE(p.messages[i].topic, "later/a") << "an acknowledged message came back";
  }
}

// libmosquitto's wake-up socket pair is not made (each queued packet would write a byte to it):
// a client holds no descriptor until it connects, then its socket only (kDescriptorsPerClient).
// Other socketpair calls still work.
TEST_F(UvMqttClientTest, AClientHoldsOnlyItsSocket) {
  const size_t before = OpenDescriptors();
  Probe p;
  UvMqttClient* c = NewClient(Plain("fds"), &p);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(OpenDescriptors(), before) << "libmosquitto's socket pair was made";
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }));
  EXPECT_EQ(OpenDescriptors(), before + kDescriptorsPerClient);
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  close(pair[0]);
  close(pair[1]);
}

TEST_F(UvMqttClientTest, Mqtt311Works) {
  Probe p;
  ClientOptions o = Plain("v311");
  o.protocol = 4;
  UvMqttClient* c = NewClient(o, &p);
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return c->connected(); }));
  SubscribeAndWait(c, &p, "v3", 0);
  ASSERT_TRUE(c->Publish("v3", AsBytes("x")).ok());
  EXPECT_FALSE(c->Publish("v3", AsBytes("x"), 0, false, {{"a", "b"}}).ok());
  ASSERT_TRUE(RunUntil([&] { return !p.messages.empty(); }));
  EXPECT_TRUE(p.messages[0].user_properties.empty());
}

TEST_F(UvMqttClientTest, DestroyingAtAnyMomentIsSafe) {
  // Mid-connect, mid-handshake, connected, and inside its own callback.
  for (int i = 0; i < 3; i++) {
    Probe p;
    UvMqttClient* c = NewClient(Tls("d" + std::to_string(i)), &p);
    ASSERT_TRUE(c->Start().ok());
    if (i == 1) RunUntil([] { return false; }, 1ms);
    if (i == 2) {
      ASSERT_TRUE(RunUntil([&] { return c->connected(); }));
    }
    clients_.clear();
    RunUntil([] { return false; }, 20ms);
  }
  std::unique_ptr<UvMqttClient> self;
  bool deleted = false;
  ClientCallbacks cb;
  cb.on_connect = [&](int) { self.reset(); deleted = true; };
  auto r = UvMqttClient::Create(&loop_, Plain("selfdestruct"), cb);
  ASSERT_TRUE(r.ok());
  self = std::move(r).value();
  ASSERT_TRUE(self->Start().ok());
  ASSERT_TRUE(RunUntil([&] { return deleted; }));
}

TEST_F(UvMqttClientTest, TwoHundredClientsOnOneLoop) {
  constexpr int kClients = 200;
  std::vector<Probe> probes(kClients);
  std::vector<UvMqttClient*> cs;
  for (int i = 0; i < kClients; i++) {
    cs.push_back(NewClient(Tls("many-" + std::to_string(i)), &probes[i]));
    ASSERT_TRUE(cs.back()->Start().ok());
  }
  ASSERT_TRUE(RunUntil([&] {
    for (auto* c : cs) {
      if (!c->connected()) return false;
    }
    return true;
  }, 60s));
  std::vector<int> mids(kClients);
  for (int i = 0; i < kClients; i++) {
    auto mid = cs[i]->Subscribe("many/" + std::to_string(i), 1);
    ASSERT_TRUE(mid.ok());
    mids[i] = *mid;
  }
  ASSERT_TRUE(RunUntil([&] {
    for (int i = 0; i < kClients; i++) {
      if (!probes[i].subacks.count(mids[i])) return false;
    }
    return true;
  }, 30s));
  // Each client sends to its neighbour.
  for (int i = 0; i < kClients; i++) {
    ASSERT_TRUE(cs[i]->Publish("many/" + std::to_string((i + 1) % kClients),
                               AsBytes(std::to_string(i)), 1).ok());
  }
  ASSERT_TRUE(RunUntil([&] {
    for (auto& p : probes) {
      if (p.messages.empty()) return false;
    }
    return true;
  }, 30s));
  for (int i = 0; i < kClients; i++) {
    const auto& m = probes[(i + 1) % kClients].messages[0];
    EXPECT_EQ(std::string(m.payload.begin(), m.payload.end()), std::to_string(i));
  }
  for (auto* c : cs) c->Stop();
  ASSERT_TRUE(RunUntil([&] {
    for (auto& p : probes) {
      if (!p.closed) return false;
    }
    return true;
  }, 30s));
  for (auto& p : probes) EXPECT_EQ(p.last_disconnect, 0);
}

}  // namespace
}  // namespace edgetrust::mqtt
