// libmosquitto driven from a libuv loop, in the manner of curl's multi-uv example: libmosquitto
// owns the socket, we own readiness. After every call into libmosquitto, Sync() looks at what it
// left behind (which socket, does it want to write, is the socket gone) and adjusts the poll
// handle; all state changes are decided there, never inside libmosquitto's callbacks.
#include "edgetrust/mqtt/uv_mqtt_client.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <utility>
#include <vector>

// glibc's own names for read(2), write(2) and close(2), which our read(), write() and close()
// below must not call back into.
extern "C" ssize_t __read(int fd, void* buf, size_t n);
extern "C" ssize_t __write(int fd, const void* buf, size_t n);
extern "C" int __close(int fd);

namespace edgetrust::mqtt {
namespace {
thread_local bool creating_client = false;  // inside our mosquitto_new, on this thread

// libmosquitto reads a plain socket a few bytes at a time: a PUBACK costs three read(2) calls
// (its type, its length, its two bytes), and the gateway reads one per message it forwards. While
// ReadAvailable runs libmosquitto on a plain connection, this thread's reads of that socket are
// served from the connection's PlainReader, which one read(2) fills with what the socket holds.
// (TLS connections need none of this: OpenSSL reads ahead.)
class PlainReader {
 public:
  static constexpr size_t kBytes = 16 << 10;

  // The connection's socket for this read; a new socket drops what an old one left.
  void Use(int fd) {
    if (fd != fd_) {
      fd_ = fd;
      pos_ = end_ = 0;
    }
    drained_ = false;  // the poll said readable, or the loop is reading on
  }
  void Reset() { fd_ = -1, pos_ = end_ = 0, drained_ = false; }
  int fd() const { return fd_; }
  size_t buffered() const { return end_ - pos_; }
  // Nothing buffered and the last read(2) took less than there was room for: the socket was
  // empty then, and what arrives later wakes the poll.
  bool drained() const { return buffered() == 0 && drained_; }

  ssize_t Read(void* out, size_t n) {
    if (buffered() == 0) {
      if (drained_) {
        errno = EAGAIN;
        return -1;
      }
      if (n >= kBytes) return ReadSocket(out, n);  // a large payload goes straight to its place
      if (buf_.empty()) buf_.resize(kBytes);
      ssize_t got = ReadSocket(buf_.data(), buf_.size());
      if (got <= 0) return got;
      pos_ = 0;
      end_ = static_cast<size_t>(got);
    }
    const size_t k = std::min(n, buffered());
    std::memcpy(out, buf_.data() + pos_, k);
    pos_ += k;
    return static_cast<ssize_t>(k);
  }

 private:
  // A short read or EAGAIN: the socket is empty for now (libmosquitto takes EAGAIN as "no more",
  // and would otherwise be asked again and again by ReadAvailable).
  ssize_t ReadSocket(void* out, size_t n) {
    ssize_t got = __read(fd_, out, n);
    drained_ = got >= 0 ? static_cast<size_t>(got) < n : errno == EAGAIN || errno == EWOULDBLOCK;
    return got;
  }

  int fd_ = -1;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0, end_ = 0;
  bool drained_ = false;
};

thread_local PlainReader* reading_plain = nullptr;  // inside ReadAvailable on a plain connection
}  // namespace
}  // namespace edgetrust::mqtt

// The executable's read() interposes on libc's for libmosquitto, as socketpair() below does:
// every other read, and every read outside ReadAvailable, goes to libc's as it is.
extern "C" ssize_t read(int fd, void* buf, size_t n) {
  edgetrust::mqtt::PlainReader* r = edgetrust::mqtt::reading_plain;
  if (r == nullptr || r->fd() != fd) return __read(fd, buf, n);
  return r->Read(buf, n);
}

// libmosquitto makes a socket pair per client to wake its own select() loop, and writes a byte to
// it for every packet it queues. Driven from libuv, nobody reads it: after a few hundred packets
// each of those writes fails with EAGAIN, a wasted system call per packet (two per message the
// gateway forwards: measured 49,662 of 50,276 write calls in a 3 s trace), and the pair holds two
// descriptors per client. libmosquitto runs without it when socketpair fails, so the one call made
// inside our mosquitto_new fails; every other caller gets the real one. (The executable's
// definition interposes on libc's for libmosquitto; mqtt_test checks that a client opens none.)
extern "C" int socketpair(int domain, int type, int protocol, int fds[2]) noexcept {
  if (edgetrust::mqtt::creating_client) {
    errno = EMFILE;
    return -1;
  }
  return static_cast<int>(syscall(SYS_socketpair, domain, type, protocol, fds));
}

namespace edgetrust::mqtt {

std::optional<std::string_view> FindUserProperty(const UserProperties& props,
                                                 std::string_view name) {
  for (const auto& p : props)
    if (p.name == name) return std::string_view(p.value);
  return std::nullopt;
}

namespace {

enum class State {
  kIdle,        // created, Start not called
  kConnecting,  // socket open, no CONNACK yet
  kConnected,   // CONNACK 0 received
  kWaiting,     // between attempts (back-off timer armed)
  kStopping,    // DISCONNECT queued, waiting for it to be written (bounded by a timer)
  kClosing,     // handles being closed
  kClosed,
};

constexpr int kConnectTimeoutSeconds = 15;
constexpr uint64_t kStopGraceMs = 1000;
constexpr uint64_t kStopHeldMaxMs = 10000;  // Stop while acknowledgements are held
// Packets read in one go before the loop gets its turn back (other connections, timers).
constexpr int kMaxPacketsPerRead = 4096;

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

// Bytes waiting to be written are capped here; beyond it a write reports "would block" and
// libmosquitto keeps its packets queued, as it does when the socket is full.
constexpr size_t kMaxCoalescedBytes = size_t{256} << 10;

// One TLS record carries at most this much plaintext.
constexpr size_t kRecordBytes = 16 << 10;

// libmosquitto writes every packet with its own write(2) (plain) or SSL_write (TLS, each going
// straight to write(2)): under load, one system call per acknowledgement and per publish, and on
// loopback each one also pays for the receiving side's TCP processing and wake-up. Once a
// connection is up its writes are kept here and written together when the loop is about to look
// for I/O again (UvMqttClient::Impl's `deferred` idle handle), or at the latest when libmosquitto
// lets go of the connection. A TLS connection's write BIO is replaced by one; a plain connection's
// write(2) calls on this thread come here through the executable's write() below, and its close()
// gives the writer a last chance to write.
//
// A TLS connection's packets are kept before they are encrypted, too: libmosquitto's SSL_write
// of one packet comes here through the executable's SSL_write below, and Flush encrypts all that
// waits with one SSL_write, in records of up to 16 KiB instead of one record per packet. Each
// record costs its sender an encryption and 22 bytes, and its receiver a decryption and, with
// OpenSSL reading without read-ahead as mosquitto does, two read(2) calls: the gateway's PUBACK
// records cost the site broker two reads per forwarded message (measured: 200,004 reads of the
// gateway's socket for 100,000 messages).
class CoalescingWriter {
 public:
  // The writer of `ssl`'s connection, if it has one (cheap: any thread's SSL_write asks).
  static CoalescingWriter* ForSsl(const SSL* ssl) {
    const int type = method_type.load(std::memory_order_acquire);
    if (ssl == nullptr || type < 0) return nullptr;
    BIO* bio = SSL_get_wbio(ssl);
    if (bio == nullptr || BIO_method_type(bio) != type) return nullptr;
    return static_cast<CoalescingWriter*>(BIO_get_data(bio));
  }

  // Installs a writer on `ssl` (whose current write BIO goes); nullptr on failure, and the
  // connection then just keeps writing directly.
  static CoalescingWriter* InstallTls(SSL* ssl, int fd, CoalescingWriter** slot) {
    BIO* bio = BIO_new(Method());
    if (bio == nullptr) return nullptr;
    auto* w = new CoalescingWriter(bio, fd, slot);
    w->ssl_ = ssl;
    // OpenSSL may still hold a record of a write it said would block (libmosquitto resends
    // what was in flight as soon as CONNACK arrives, before the writer is here): it wants that
    // same write again, so writes go to it until one goes through.
    w->retrying_ = true;
    BIO_set_data(bio, w);
    BIO_set_init(bio, 1);
    SSL_set0_wbio(ssl, bio);  // the SSL now owns it; our destroy runs from SSL_free
    *slot = w;
    return w;
  }
  // Takes this thread's write(2) calls on the plain socket `fd` until it is closed.
  static CoalescingWriter* InstallPlain(int fd, CoalescingWriter** slot);
  // Whether this is the writer of the connection on `fd` (TLS: of `ssl`).
  bool WritesFor(SSL* ssl, int fd) const {
    return ssl != nullptr ? bio_ != nullptr && SSL_get_wbio(ssl) == bio_
                          : bio_ == nullptr && fd_ == fd;
  }

  bool tls() const { return bio_ != nullptr; }
  // Bytes waiting: to be written, and (TLS) to be encrypted first.
  size_t pending() const { return unsent() + plain_.size(); }
  // The socket took less than was pending: wait for it to be writable.
  bool blocked() const { return blocked_; }
  // From now on accept nothing while anything is pending, and write straight through: what
  // libmosquitto believes written must be in the socket before it closes it.
  void SetClosing() {
    Seal();
    closing_ = true;
  }

  // Encrypts what waits, and writes what the socket takes now. False when the connection is
  // broken (the read side will see it); what was pending is then dropped.
  bool Flush() {
    Seal();
    return FlushSocket();
  }

  // libmosquitto's SSL_write of one packet (`len` bytes): kept, and `len` returned; or, when
  // the packet cannot wait (the connection is closing or broken, a write is being retried, a
  // large packet, or too much is unsent), what waits is encrypted and the packet goes to
  // OpenSSL now, with OpenSSL's answer. After "would block" libmosquitto calls again with the
  // same packet, as OpenSSL requires; until that write is through, every write goes to OpenSSL.
  int TakePlain(const void* data, int len) {
    if (len > 0 && static_cast<size_t>(len) <= kRecordBytes && !failed_ && !closing_ &&
        !retrying_ && Room()) {
      if (plain_.size() + static_cast<size_t>(len) > kRecordBytes) Seal();
      if (!failed_) {
        try {  // called from C (libmosquitto): nothing may be thrown through it
          plain_.append(static_cast<const char*>(data), static_cast<size_t>(len));
          return len;
        } catch (const std::bad_alloc&) {
        }
      }
    }
    Seal();  // what came before goes first
    size_t written = 0;
    const int ok = SSL_write_ex(ssl_, data, static_cast<size_t>(std::max(len, 0)), &written);
    retrying_ = ok <= 0 && (SSL_want_write(ssl_) || SSL_want_read(ssl_));
    return ok > 0 ? static_cast<int>(written) : -1;
  }

  // Encrypts the packets kept as plaintext, in one SSL_write whose records the BIO takes
  // whatever is unsent. Not while OpenSSL waits for a write to be retried: it would refuse
  // another (none is kept meanwhile).
  void Seal() {
    if (plain_.empty() || retrying_) return;
    if (!failed_) {
      sealing_ = true;
      size_t written = 0;
      const int ok = SSL_write_ex(ssl_, plain_.data(), plain_.size(), &written);
      sealing_ = false;
      if (ok <= 0 || written != plain_.size()) {
        // The BIO takes every record, so OpenSSL refused for a reason of its own (a broken
        // TLS state, no memory). libmosquitto believes these packets sent: end the connection
        // now, so that it reconnects and sends again what awaits an acknowledgement, instead of
        // waiting for answers that cannot come. Leave nothing on this thread's OpenSSL error
        // queue for the next SSL_get_error of another connection.
        ERR_clear_error();
        failed_ = true;
        error_ = EPROTO;
        shutdown(fd_, SHUT_RDWR);
      }
    }
    plain_.clear();
    if (plain_.capacity() > 2 * kRecordBytes) plain_.shrink_to_fit();
  }

  // Writes what the socket takes now (nothing is encrypted: OpenSSL may be the caller).
  bool FlushSocket() {
    blocked_ = false;
    while (unsent() > 0 && !failed_) {
      ssize_t n = Send(buf_.data() + sent_, unsent());
      if (n > 0) {
        sent_ += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        blocked_ = true;
        break;
      } else {
        failed_ = true;
        error_ = n == 0 ? EPIPE : errno;
      }
    }
    if (sent_ == buf_.size() || failed_) {
      buf_.clear();
      sent_ = 0;
      if (buf_.capacity() > kMaxCoalescedBytes) buf_.shrink_to_fit();
    }
    return !failed_;
  }

  // libmosquitto's write of `len` bytes: all taken, or -1 with errno set (EAGAIN: would block,
  // libmosquitto keeps the packet queued and tries again when the socket is writable).
  // Once a send has failed every write fails as the socket's own would have, so that
  // libmosquitto drops the connection now instead of reporting writes that went nowhere.
  ssize_t Take(const char* data, size_t len) {
    if (failed_) {
      errno = error_;
      return -1;
    }
    if (closing_) {
      if (!FlushSocket()) {
        errno = error_;
        return -1;
      }
      if (unsent() > 0) {
        errno = EAGAIN;
        return -1;
      }
      return Send(data, len);
    }
    if (!sealing_ && !Room()) {
      if (failed_) {
        errno = error_;
        return -1;
      }
      errno = EAGAIN;
      return -1;
    }
    try {  // called from C (libmosquitto, OpenSSL): nothing may be thrown through it
      if (sent_ > 0 && sent_ >= buf_.size() / 2) {
        buf_.erase(0, sent_);
        sent_ = 0;
      }
      buf_.append(data, len);
    } catch (const std::bad_alloc&) {
      errno = ENOMEM;
      return -1;
    }
    return static_cast<ssize_t>(len);
  }

  // The connection is going (its SSL freed, its plain socket closed): a last write of what is
  // pending, then the writer goes.
  void Release();

 private:
  CoalescingWriter(BIO* bio, int fd, CoalescingWriter** slot) : bio_(bio), fd_(fd), slot_(slot) {}

  size_t unsent() const { return buf_.size() - sent_; }
  // Whether less than kMaxCoalescedBytes is unsent, after writing what the socket takes.
  bool Room() {
    if (unsent() < kMaxCoalescedBytes) return true;
    return FlushSocket() && unsent() < kMaxCoalescedBytes;
  }

  // send(2) without blocking or SIGPIPE, retried on EINTR.
  ssize_t Send(const char* data, size_t len) const {
    ssize_t n;
    do {
      n = send(fd_, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  static BIO_METHOD* Method() {
    static BIO_METHOD* method = [] {
      const int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
      BIO_METHOD* m = BIO_meth_new(type, "edgetrust coalescing writer");
      BIO_meth_set_write(m, &Write);
      BIO_meth_set_ctrl(m, &Ctrl);
      BIO_meth_set_destroy(m, &Destroy);
      method_type.store(type, std::memory_order_release);
      return m;
    }();
    return method;
  }

  static int Write(BIO* bio, const char* data, int len) {
    BIO_clear_retry_flags(bio);
    auto* self = static_cast<CoalescingWriter*>(BIO_get_data(bio));
    if (self == nullptr || len < 0) return -1;
    const ssize_t n = self->Take(data, static_cast<size_t>(len));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(bio);
    return static_cast<int>(n);
  }

  static long Ctrl(BIO* bio, int cmd, long, void*) {
    auto* self = static_cast<CoalescingWriter*>(BIO_get_data(bio));
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        // OpenSSL flushes after handshake and alert messages; what the socket does not take
        // now stays queued and goes with the next flush.
        if (self != nullptr) self->FlushSocket();
        return 1;
      case BIO_CTRL_WPENDING:
        return self != nullptr ? static_cast<long>(self->unsent()) : 0;
      case BIO_CTRL_DUP:
        return 1;
      default:
        return 0;
    }
  }

  static int Destroy(BIO* bio) {
    auto* self = static_cast<CoalescingWriter*>(BIO_get_data(bio));
    if (self == nullptr) return 1;
    // libmosquitto frees the SSL just before it closes the socket: last chance to write.
    BIO_set_data(bio, nullptr);
    self->Release();
    return 1;
  }

  static inline std::atomic<int> method_type{-1};  // of Method(), once made

  BIO* bio_;  // TLS; nullptr for a plain connection
  SSL* ssl_ = nullptr;  // TLS: the connection, which owns bio_
  int fd_;
  CoalescingWriter** slot_;  // the owner's pointer to us, cleared when we go
  std::string buf_;          // to be written (TLS: records)
  size_t sent_ = 0;
  std::string plain_;        // TLS: packets to be encrypted
  bool blocked_ = false;
  bool closing_ = false;
  bool failed_ = false;
  bool sealing_ = false;   // inside Seal's SSL_write: take every record
  bool retrying_ = false;  // OpenSSL said "would block" and waits for the same write again
  int error_ = EPIPE;  // failed_: why
};

// A thread's table of T* by descriptor, for the executable's write() and close(): they may run in
// a signal handler (libuv's writes to its signal pipe) or on a thread whose C++ thread_local
// objects are gone, so this is plain old data; a reader interrupted at any moment sees a
// complete table (grown before it is seen, the old one freed only once it no longer can be),
// and the table is freed when it holds nothing.
template <typename T>
struct FdTable {
  T** slots = nullptr;
  size_t size = 0;
  size_t count = 0;

  T* Find(int fd) const {
    if (count == 0 || fd < 0 || static_cast<size_t>(fd) >= size) return nullptr;
    return slots[fd];
  }

  // False (and nothing set) when out of memory.
  bool Set(int fd, T* p) {
    const size_t need = static_cast<size_t>(fd) + 1;
    if (need > size) {
      const size_t grown_size = std::max<size_t>({need, size * 2, 64});
      auto** grown = static_cast<T**>(std::calloc(grown_size, sizeof(T*)));
      if (grown == nullptr) return false;
      if (size > 0) std::copy(slots, slots + size, grown);
      T** const old = slots;
      slots = grown;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      size = grown_size;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      std::free(static_cast<void*>(old));
    }
    if (slots[fd] == nullptr) count++;
    slots[fd] = p;
    return true;
  }

  void Clear(int fd) {
    if (Find(fd) == nullptr) return;
    slots[fd] = nullptr;
    if (--count == 0) {
      T** const old = slots;
      size = 0;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      slots = nullptr;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      std::free(static_cast<void*>(old));
    }
  }

  // A forked child's copy: forgotten, not freed (the parent's entries are not the child's).
  void Forget() { slots = nullptr, size = count = 0; }
};

// This thread's plain writers by socket.
thread_local FdTable<CoalescingWriter> plain_writers;
// The poll handles of this thread's stopping connections whose socket a Linger keeps open.
// libmosquitto closes its descriptor as soon as the DISCONNECT is written, before the client's
// watch of it is closed; an epoll registration lives as long as the socket, not the descriptor,
// so if the poll were stopped only then (epoll_ctl on a closed descriptor fails), the lingering
// socket would go on reporting its events under that number, which the next socket opened gets.
// The executable's close() stops the poll first.
thread_local FdTable<uv_poll_t> closing_polls;

// A forked child must neither write its copy of a parent's pending bytes into a shared socket
// when it closes its copy of the descriptor, nor stop the parent's polls in the epoll instance
// it shares: it forgets both tables.
void ForgetTablesInForkedChild() {
  static std::once_flag atfork;
  std::call_once(atfork, [] {
    pthread_atfork(nullptr, nullptr, [] {
      plain_writers.Forget();
      closing_polls.Forget();
    });
  });
}

CoalescingWriter* PlainWriterFor(int fd) { return plain_writers.Find(fd); }

CoalescingWriter* CoalescingWriter::InstallPlain(int fd, CoalescingWriter** slot) {
  if (fd < 0 || PlainWriterFor(fd) != nullptr) return nullptr;
  ForgetTablesInForkedChild();
  auto* w = new CoalescingWriter(nullptr, fd, slot);
  if (!plain_writers.Set(fd, w)) {
    delete w;
    return nullptr;
  }
  *slot = w;
  return w;
}

void CoalescingWriter::Release() {
  // TLS: from SSL_free, where the SSL is half gone; libmosquitto shuts TLS down first (which
  // encrypts what was kept) unless TLS is broken, and then what was kept cannot go anyway.
  plain_.clear();
  FlushSocket();
  if (bio_ == nullptr && PlainWriterFor(fd_) == this) plain_writers.Clear(fd_);
  if (*slot_ == this) *slot_ = nullptr;
  delete this;
}

// Closing a TCP socket outright while the broker still answers what was just sent (SUBACKs,
// retained messages) makes the kernel answer that data with a reset; mosquitto, when a write of
// its answers fails, drops the connection before it reads what came after in its input: the
// PUBLISH and DISCONNECT written just before the close are lost. So a stopping connection keeps
// a descriptor of its own for the socket (libmosquitto closes its own when it is done), closes
// only the sending side (the peer sees the end after everything sent), and reads and drops what
// still comes until the broker closes too, or kLingerMs passes: a lingering close.
class Linger {
 public:
  static constexpr uint64_t kLingerMs = 1000;

  // Takes `fd` (a descriptor nothing else uses) and closes it, at once or later on `loop`.
  static void Start(uv_loop_t* loop, int fd) {
    if (fd < 0) return;
    shutdown(fd, SHUT_WR);
    auto* l = new Linger(fd);
    if (uv_poll_init_socket(loop, &l->poll_, fd) != 0) {
      close(fd);
      delete l;
      return;
    }
    uv_timer_init(loop, &l->timer_);
    l->poll_.data = l->timer_.data = l;
    uv_poll_start(&l->poll_, UV_READABLE | UV_DISCONNECT, &Linger::OnReadable);
    uv_timer_start(&l->timer_, [](uv_timer_t* t) { static_cast<Linger*>(t->data)->Finish(); },
                   kLingerMs, 0);
  }

 private:
  explicit Linger(int fd) : fd_(fd) {}

  static void OnReadable(uv_poll_t* p, int status, int) {
    auto* self = static_cast<Linger*>(p->data);
    if (status < 0) return self->Finish();
    char sink[16 << 10];
    for (int i = 0; i < 64; ++i) {  // at most 1 MiB a turn: the loop has other work
      const ssize_t n = recv(self->fd_, sink, sizeof sink, MSG_DONTWAIT);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      return self->Finish();  // the broker closed (or reset): done
    }
  }

  void Finish() {
    if (finishing_) return;
    finishing_ = true;
    auto closed = [](uv_handle_t* h) {
      auto* self = static_cast<Linger*>(h->data);
      if (--self->open_handles_ > 0) return;
      close(self->fd_);  // after the poll handle is gone, as libuv requires
      delete self;
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closed);
  }

  uv_poll_t poll_;
  uv_timer_t timer_;
  int fd_;
  int open_handles_ = 2;
  bool finishing_ = false;
};

}  // namespace
}  // namespace edgetrust::mqtt

// The executable's write() and close() interpose on libc's for libmosquitto, as read() above
// does: only a plain connection's socket, on the thread whose loop drives it, goes to its
// CoalescingWriter; every other descriptor, and every other thread, goes to libc's as it is.
extern "C" ssize_t write(int fd, const void* buf, size_t n) {
  edgetrust::mqtt::CoalescingWriter* w = edgetrust::mqtt::PlainWriterFor(fd);
  if (w == nullptr) return __write(fd, buf, n);
  return w->Take(static_cast<const char*>(buf), n);
}

extern "C" int close(int fd) {
  if (edgetrust::mqtt::CoalescingWriter* w = edgetrust::mqtt::PlainWriterFor(fd)) w->Release();
  if (uv_poll_t* p = edgetrust::mqtt::closing_polls.Find(fd)) {
    uv_poll_stop(p);
    edgetrust::mqtt::closing_polls.Clear(fd);
  }
  return __close(fd);
}

// The executable's SSL_write and SSL_shutdown interpose on libssl's for libmosquitto: a TLS
// connection with a writer keeps its packets there (the writer calls SSL_write_ex, which is not
// interposed); every other SSL goes to libssl's as it is. Before the close_notify alert, what the
// writer keeps is encrypted, so that it goes out ahead of the alert.
extern "C" int SSL_write(SSL* ssl, const void* buf, int num) {
  if (edgetrust::mqtt::CoalescingWriter* w = edgetrust::mqtt::CoalescingWriter::ForSsl(ssl)) {
    return w->TakePlain(buf, num);
  }
  using Write = int (*)(SSL*, const void*, int);
  static const auto libssl_write = reinterpret_cast<Write>(dlsym(RTLD_NEXT, "SSL_write"));
  if (libssl_write != nullptr) return libssl_write(ssl, buf, num);
  size_t written = 0;  // (libssl is linked in: not reached)
  return SSL_write_ex(ssl, buf, static_cast<size_t>(std::max(num, 0)), &written) > 0
             ? static_cast<int>(written)
             : -1;
}

extern "C" int SSL_shutdown(SSL* ssl) {
  if (edgetrust::mqtt::CoalescingWriter* w = edgetrust::mqtt::CoalescingWriter::ForSsl(ssl)) {
    w->Seal();
  }
  using Shutdown = int (*)(SSL*);
  static const auto libssl_shutdown = reinterpret_cast<Shutdown>(dlsym(RTLD_NEXT, "SSL_shutdown"));
  return libssl_shutdown != nullptr ? libssl_shutdown(ssl) : -1;
}

namespace edgetrust::mqtt {

// One poll handle per socket: libmosquitto replaces the socket on every reconnect, and a uv_poll_t
// cannot change its fd, so each socket gets its own watch, closed when the socket goes.
struct SocketWatch {
  uv_poll_t poll;
  UvMqttClient::Impl* owner;
  int fd;
  int events = -1;  // events currently asked for; -1 = not started
};

struct UvMqttClient::Impl {
  uv_loop_t* loop = nullptr;
  ClientOptions options;
  ClientCallbacks callbacks;
  struct mosquitto* mosq = nullptr;

  uv_timer_t tick;   // 1 s: keepalive (mosquitto_loop_misc), connect timeout
  uv_timer_t retry;  // one-shot: back-off before reconnect; stop grace
  uv_timer_t pause;  // one-shot: options.read_pause after a read
  bool read_paused = false;
  uv_idle_t deferred;  // armed while coalesced records wait or TLS holds unread bytes
  SocketWatch* watch = nullptr;
  CoalescingWriter* writer = nullptr;  // this connection's writes, once connected
  bool read_more = false;
  PlainReader plain_in;  // plain connections: what read(2) took that libmosquitto has not yet
  // Connected: what libmosquitto queued is written before the loop next polls, not after a
  // round of asking the poll for writability (with libuv, two epoll_ctl calls to ask and two to
  // stop asking, per burst of publishes). Only a socket that did not take everything
  // (write_blocked) is watched for writability.
  bool write_due = false;
  bool write_blocked = false;
  // hold_acks: on_received answered kLater; nothing is read or written until Resolve.
  bool held = false;
  uint64_t last_hold = 0;  // held: the hold that is current
  uint64_t stop_started_ms = 0;
  enum class Resolution { kNone, kAcknowledge, kDrop } resolution = Resolution::kNone;
  int pending_closes = 0;
  int linger_fd = -1;  // stopping: our own descriptor of the socket, for a lingering close

  State state = State::kIdle;
  bool started_once = false;  // connect_async done once; later attempts use reconnect_async
  bool detached = false;      // the public object is gone: no more callbacks, free when closed
  int in_mosq = 0;            // depth of calls into libmosquitto (callbacks run inside them)
  int lost_reason = MOSQ_ERR_CONN_LOST;
  bool received = false;  // hold_acks: messages delivered since on_received last ran
  int attempts = 0;
  uint64_t attempt_started_ms = 0;
  std::minstd_rand rng{std::random_device{}()};

  // ---- libmosquitto callbacks (run inside a mosquitto_* call) ----
  static void OnConnect(struct mosquitto*, void* obj, int rc, int, const mosquitto_property*) {
    auto* self = static_cast<Impl*>(obj);
    if (rc == 0) {
      self->state = State::kConnected;
      self->attempts = 0;
    } else {
      self->lost_reason = rc;
    }
    if (!self->detached && self->callbacks.on_connect) self->callbacks.on_connect(rc);
  }
  static void OnDisconnect(struct mosquitto*, void* obj, int rc, const mosquitto_property*) {
    // Only remember why; Sync() sees the socket gone and acts.
    static_cast<Impl*>(obj)->lost_reason = rc;
  }
  static void OnPublish(struct mosquitto*, void* obj, int mid, int reason,
                        const mosquitto_property*) {
    auto* self = static_cast<Impl*>(obj);
    if (!self->detached && self->callbacks.on_publish_ack) self->callbacks.on_publish_ack(mid, reason);
  }
  static void OnSubscribe(struct mosquitto*, void* obj, int mid, int count, const int* granted,
                          const mosquitto_property*) {
    auto* self = static_cast<Impl*>(obj);
    if (self->detached || !self->callbacks.on_subscribe) return;
    std::vector<int> g(granted, granted + count);
    self->callbacks.on_subscribe(mid, g);
  }
  static void OnMessage(struct mosquitto*, void* obj, const struct mosquitto_message* m,
                        const mosquitto_property* props) {
    auto* self = static_cast<Impl*>(obj);
    if (self->detached || !self->callbacks.on_message) return;
    self->received = self->options.hold_acks;
    Message msg;
    msg.topic = m->topic ? m->topic : "";
    const auto* p = static_cast<const uint8_t*>(m->payload);
    msg.payload.assign(p, p + (m->payloadlen > 0 ? m->payloadlen : 0));
    msg.qos = m->qos;
    msg.retain = m->retain;
    const mosquitto_property* it = props;
    bool skip_first = false;
    for (;;) {
      char* name = nullptr;
      char* value = nullptr;
      it = mosquitto_property_read_string_pair(it, MQTT_PROP_USER_PROPERTY, &name, &value,
                                               skip_first);
      if (!it) break;
      msg.user_properties.push_back({name ? name : "", value ? value : ""});
      free(name);
      free(value);
      skip_first = true;
    }
    self->callbacks.on_message(msg);
  }

  // ---- readiness ----
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* w = static_cast<SocketWatch*>(handle->data);
    Impl* self = w->owner;
    if (self->watch != w) return;  // a stale watch whose close is pending
    if (status < 0) {
      // POLLERR (e.g. connection refused): libuv has already stopped the handle.
      self->lost_reason = MOSQ_ERR_CONN_LOST;
      self->ConnectionLost();
      return;
    }
    if (!self->Handshaking()) {
      self->Service(events & UV_READABLE, events & UV_WRITABLE);
      return;
    }
    // libmosquitto continues a TLS handshake only from loop_read; loop_write would return at
    // once and we would spin on writability.
    self->in_mosq++;
    int rc = mosquitto_loop_read(self->mosq, 1);
    self->in_mosq--;
    if (rc == MOSQ_ERR_SUCCESS && self->Handshaking() && PeerGone(mosquitto_socket(self->mosq))) {
      // libmosquitto reports a socket error during the handshake as "carry on" and would be
      // woken for the hang-up forever.
      self->lost_reason = MOSQ_ERR_TLS_HANDSHAKE;
      self->ConnectionLost();
      return;
    }
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) self->lost_reason = rc;
    self->Sync();
  }

  // Reads what is there and writes what is due, on a connected (or connecting) socket.
  void Service(bool readable, bool writable) {
    int rc = MOSQ_ERR_SUCCESS;
    in_mosq++;
    if (writable && writer != nullptr) writer->Flush();
    if (readable && !held) {
      rc = ReadAvailable();
      if (options.read_pause.count() > 0 && state == State::kConnected) {
        read_paused = true;
        uv_timer_start(&pause, [](uv_timer_t* t) {
          auto* self = static_cast<Impl*>(t->data);
          self->read_paused = false;
          self->Sync();
        }, static_cast<uint64_t>(options.read_pause.count()), 0);
      }
    }
    if (rc == MOSQ_ERR_TLS && mosquitto_socket(mosq) >= 0) {
      in_mosq--;
      Abort();  // the TLS stream broke where libmosquitto was not looking
      return;
    }
    if (received) {
      received = false;
      // Held already during the call, so that a Resolve from inside it is not lost.
      held = true;
      const uint64_t hold = ++last_hold;
      const Received answer = detached || !callbacks.on_received ? Received::kAcknowledge
                                                                  : callbacks.on_received(hold);
      if (answer != Received::kLater) {
        held = false;
        resolution = Resolution::kNone;
      }
      if (answer == Received::kDrop) {
        // Drop the connection with the acknowledgements still unwritten.
        in_mosq--;
        Abort();
        return;
      }
    }
    // With hold_acks libmosquitto only queues: write what the read queued now.
    const bool write = !held && (writable || (options.hold_acks && mosquitto_want_write(mosq)));
    if (rc == MOSQ_ERR_SUCCESS && write && watch != nullptr && mosquitto_socket(mosq) == watch->fd) {
      rc = mosquitto_loop_write(mosq, 1);
      // This read's answers leave now, together: the loop may run other work (a request's
      // processing) before it next turns.
      if (writer != nullptr) writer->Flush();
      write_blocked = rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(mosq);
    }
    in_mosq--;
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) lost_reason = rc;
    Sync();
  }

  // Runs once before the loop next waits for I/O: writes the coalesced records, and goes on
  // reading what TLS has already taken off the socket (the socket will not wake us for it).
  void OnDeferred() {
    uv_idle_stop(&deferred);
    const bool write = write_due;
    write_due = false;
    if (state != State::kConnected && state != State::kConnecting && state != State::kStopping) {
      return;
    }
    if (resolution != Resolution::kNone && held) {
      const bool acknowledge = resolution == Resolution::kAcknowledge;
      resolution = Resolution::kNone;
      held = false;
      if (!acknowledge) {
        Abort();
        return;
      }
      // What TLS or plain_in already took off the socket will not wake the poll.
      auto* ssl = static_cast<SSL*>(mosquitto_ssl_get(mosq));
      read_more = (ssl != nullptr && SSL_has_pending(ssl)) || plain_in.buffered() > 0;
      Service(false, true);  // writes the acknowledgements, and what waited behind them
      return;
    }
    const bool more = read_more && !held;
    read_more = false;
    if (writer != nullptr) writer->Flush();
    if ((more || write) && !Handshaking()) {
      Service(more, write);
      return;
    }
    Sync();
  }

  // mosquitto_loop_read reads about one packet per call (a subscriber has no queue for it to
  // size the batch by), so read on while bytes are waiting: everything that arrived together is
  // then handled — and, with hold_acks, committed and acknowledged — together.
  int ReadAvailable() {
    int rc = MOSQ_ERR_SUCCESS;
    // Callbacks run inside mosquitto_loop_read and may read another client: restore, not clear.
    PlainReader* const outer = reading_plain;
    if (mosquitto_ssl_get(mosq) == nullptr) {
      plain_in.Use(mosquitto_socket(mosq));
      reading_plain = &plain_in;
    }
    for (int i = 0;; ++i) {
      rc = mosquitto_loop_read(mosq, 1);
      if (rc != MOSQ_ERR_SUCCESS) break;
      const int fd = mosquitto_socket(mosq);
      if (fd < 0) break;
      auto* ssl = static_cast<SSL*>(mosquitto_ssl_get(mosq));
      if (ssl == nullptr) {
        if (fd != plain_in.fd() || plain_in.drained()) break;
      } else if (SSL_pending(ssl) == 0) {
        // With read-ahead TLS keeps what one read(2) returned, and those bytes never wake the
        // poll again. Go on while they hold a whole record (SSL_peek decrypts it, no system
        // call); when they hold none, look at the socket once (not once per packet). Only
        // part of a record: its rest will wake the poll (SSL_peek tried one read(2)).
        char b;
        if (!SSL_has_pending(ssl)) {
          if (!BytesWaiting(fd)) break;
        } else if (const int n = SSL_peek(ssl, &b, 1); n <= 0) {
          if (SSL_get_error(ssl, n) != SSL_ERROR_WANT_READ) {
            // EOF inside a record, or an alert: the connection is over. Leave nothing on this
            // thread's OpenSSL error queue, where the next SSL_get_error of another connection
            // on the loop would find it and drop that one too.
            ERR_clear_error();
            rc = MOSQ_ERR_TLS;
          }
          break;
        }
      }
      if (i + 1 == kMaxPacketsPerRead) {
        // The other connections' turn. What TLS or plain_in holds would not wake the poll: read
        // on before the loop next waits.
        read_more = ssl != nullptr || plain_in.buffered() > 0;
        break;
      }
    }
    reading_plain = outer;
    return rc;
  }

  static bool BytesWaiting(int fd) {
    char b;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

  // True when the socket has hit EOF or an error (peeks, consumes nothing).
  static bool PeerGone(int fd) {
    if (fd < 0) return true;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }

  bool Handshaking() const {
    auto* ssl = static_cast<SSL*>(mosquitto_ssl_get(mosq));
    return ssl != nullptr && SSL_in_init(ssl);
  }

  int WantedEvents() const {
    auto* ssl = static_cast<SSL*>(mosquitto_ssl_get(mosq));
    if (ssl != nullptr && SSL_in_init(ssl)) {
      return UV_READABLE | (SSL_want_write(ssl) ? UV_WRITABLE : 0);
    }
    const bool blocked = writer != nullptr && writer->blocked();
    if (held) return blocked ? UV_WRITABLE : 0;  // only what was written before the hold
    // Connecting (the socket's writability says the TCP connect is done) and stopping: as
    // libmosquitto asks. Connected: only when the socket did not take everything.
    const bool connected = state == State::kConnected;
    const bool wants = connected ? write_blocked : mosquitto_want_write(mosq);
    return (connected && read_paused ? 0 : UV_READABLE) | (wants || blocked ? UV_WRITABLE : 0);
  }

  // Connected, not held, and libmosquitto has queued something the socket was not asked to take.
  bool WriteDue() const {
    return state == State::kConnected && !held && !write_blocked && !Handshaking() &&
           mosquitto_want_write(mosq);
  }

  void CloseWatch() {
    if (!watch) return;
    SocketWatch* w = watch;
    watch = nullptr;
    // uv_close stops the poll now, while the descriptor is still open.
    if (closing_polls.Find(w->fd) == &w->poll) closing_polls.Clear(w->fd);
    pending_closes++;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) {
      auto* sw = static_cast<SocketWatch*>(h->data);
      Impl* owner = sw->owner;
      delete sw;
      owner->HandleClosed();
    });
  }

  // Called after every call into libmosquitto made outside its callbacks.
  void Sync() {
    if (in_mosq > 0) return;  // the outermost call will sync
    int fd = mosquitto_socket(mosq);
    if (watch && watch->fd != fd) CloseWatch();
    if (fd < 0) {
      if (state == State::kConnecting || state == State::kConnected) {
        ConnectionLost();
      } else if (state == State::kStopping) {
        FinishStop();
      }
      return;
    }
    if (state == State::kClosing || state == State::kClosed || state == State::kWaiting) return;
    if (!watch) {
      auto* w = new SocketWatch{};
      w->owner = this;
      w->fd = fd;
      if (uv_poll_init_socket(loop, &w->poll, fd) != 0) {
        delete w;
        lost_reason = MOSQ_ERR_ERRNO;
        ConnectionLost();
        return;
      }
      w->poll.data = w;
      watch = w;
    }
    auto* ssl = static_cast<SSL*>(mosquitto_ssl_get(mosq));
    if (state == State::kConnected && (writer == nullptr || !writer->WritesFor(ssl, fd))) {
      if (ssl == nullptr) {
        CoalescingWriter::InstallPlain(fd, &writer);  // from now on write coalesced
      } else if (!SSL_in_init(ssl)) {
        // TLS is up: from now on read as much as the socket has at once, and write coalesced.
        SSL_set_read_ahead(ssl, 1);
        CoalescingWriter::InstallTls(ssl, fd, &writer);
      }
    }
    write_due = write_due || WriteDue();
    int want = WantedEvents();
    if (want != watch->events) {
      watch->events = want;
      uv_poll_start(&watch->poll, want, &Impl::OnPoll);
    }
    if (read_more || write_due || resolution != Resolution::kNone ||
        (writer != nullptr && writer->pending() > 0 && !writer->blocked())) {
      uv_idle_start(&deferred, [](uv_idle_t* h) { static_cast<Impl*>(h->data)->OnDeferred(); });
    }
    if (state == State::kStopping && !mosquitto_want_write(mosq)) {
      // DISCONNECT written; libmosquitto closes the socket itself, but do not rely on it.
      FinishStop();
    }
  }

  // Ends the connection at once, writing nothing more (held acknowledgements included).
  void Abort() {
    int fd = mosquitto_socket(mosq);
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
    lost_reason = MOSQ_ERR_CONN_LOST;
    ConnectionLost();
  }

  void ConnectionLost() {
    CloseWatch();
    plain_in.Reset();
    read_more = write_due = write_blocked = read_paused = false;
    uv_timer_stop(&pause);
    held = false;  // those acknowledgements die with the connection
    resolution = Resolution::kNone;
    if (state == State::kStopping) {
      FinishStop();
      return;
    }
    if (state != State::kConnecting && state != State::kConnected) return;
    state = State::kWaiting;
    int reason = lost_reason;
    lost_reason = MOSQ_ERR_CONN_LOST;
    if (!detached && callbacks.on_disconnect) callbacks.on_disconnect(reason ? reason : MOSQ_ERR_CONN_LOST);
    if (state != State::kWaiting) return;  // the callback called Stop()
    if (options.reconnect && !detached) {
      ScheduleReconnect();
    } else {
      BeginClose();
    }
  }

  void ScheduleReconnect() {
    double base = static_cast<double>(options.reconnect_min.count());
    double cap = static_cast<double>(options.reconnect_max.count());
    double delay = std::min(cap, base * static_cast<double>(1ULL << std::min(attempts, 20)));
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    delay = std::max(1.0, delay * jitter(rng));
    attempts++;
    uv_timer_start(&retry, [](uv_timer_t* t) {
      auto* self = static_cast<Impl*>(t->data);
      if (self->state == State::kWaiting) self->Attempt();
    }, static_cast<uint64_t>(delay), 0);
  }

  // One connection attempt; failures go through the same path as a lost connection.
  void Attempt() {
    state = State::kConnecting;
    attempt_started_ms = uv_now(loop);
    int rc;
    in_mosq++;
    if (!started_once) {
      started_once = true;
      rc = mosquitto_connect_bind_async(mosq, options.host.c_str(), options.port,
                                        options.keepalive, nullptr);
    } else {
      ReleasePlainWriter();  // the stale socket's, before libmosquitto closes it
      rc = mosquitto_reconnect_async(mosq);
    }
    in_mosq--;
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) {
      lost_reason = rc;
      if (mosquitto_socket(mosq) < 0) {
        ConnectionLost();
        return;
      }
    }
    Sync();
  }

  void OnTick() {
    if (state == State::kConnecting &&
        uv_now(loop) - attempt_started_ms > kConnectTimeoutSeconds * 1000ULL) {
      // A peer that accepted TCP but never finishes TLS or never answers CONNECT. The next
      // mosquitto_reconnect_async closes the stale socket.
      lost_reason = MOSQ_ERR_TIMEOUT;
      ConnectionLost();
      return;
    }
    if (state != State::kConnected && state != State::kConnecting) return;
    in_mosq++;
    int rc = mosquitto_loop_misc(mosq);
    in_mosq--;
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) lost_reason = rc;
    Sync();
  }

  void Stop() {
    switch (state) {
      case State::kStopping:
      case State::kClosing:
      case State::kClosed:
        return;
      case State::kIdle:
      case State::kWaiting:
        BeginClose();
        return;
      case State::kConnecting:
      case State::kConnected:
        break;
    }
    bool was_connected = state == State::kConnected;
    state = State::kStopping;
    if (!was_connected) {
      BeginClose();
      return;
    }
    if (const int fd = mosquitto_socket(mosq); fd >= 0 && linger_fd < 0) {
      linger_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);  // -1: no lingering close, nothing else changes
      if (linger_fd >= 0 && watch != nullptr && watch->fd == fd) {
        ForgetTablesInForkedChild();
        closing_polls.Set(fd, &watch->poll);  // out of memory: a stale registration is possible
      }
    }
    in_mosq++;
    // The DISCONNECT must not be taken into the writer's buffer and dropped with it when
    // libmosquitto closes the socket right after "writing" it: from now on the writer behaves
    // like a plain socket (it says "would block" until its buffer has gone out).
    if (writer != nullptr) writer->SetClosing();
    stop_started_ms = uv_now(loop);
    mosquitto_disconnect_v5(mosq, 0, nullptr);
    in_mosq--;
    uv_timer_stop(&retry);
    uv_timer_start(&retry, &Impl::OnStopGrace, kStopGraceMs, 0);
    Sync();
  }

  static void OnStopGrace(uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    if (self->state != State::kStopping) return;
    if (self->held && uv_now(self->loop) - self->stop_started_ms < kStopHeldMaxMs) {
      // A commit is still deciding about the held acknowledgements (they and the DISCONNECT
      // wait behind it): give it time, within bounds.
      uv_timer_start(t, &Impl::OnStopGrace, kStopGraceMs, 0);
      return;
    }
    self->FinishStop();
  }

  void FinishStop() {
    if (state != State::kStopping) return;
    if (!detached && callbacks.on_disconnect) callbacks.on_disconnect(0);
    BeginClose();
  }

  void BeginClose() {
    if (state == State::kClosing || state == State::kClosed) return;
    state = State::kClosing;
    CloseWatch();
    pending_closes += 4;
    uv_close(reinterpret_cast<uv_handle_t*>(&pause), [](uv_handle_t* h) {
      static_cast<Impl*>(h->data)->HandleClosed();
    });
    uv_close(reinterpret_cast<uv_handle_t*>(&deferred), [](uv_handle_t* h) {
      static_cast<Impl*>(h->data)->HandleClosed();
    });
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), [](uv_handle_t* h) {
      static_cast<Impl*>(h->data)->HandleClosed();
    });
    uv_close(reinterpret_cast<uv_handle_t*>(&retry), [](uv_handle_t* h) {
      static_cast<Impl*>(h->data)->HandleClosed();
    });
  }

  void HandleClosed() {
    if (--pending_closes > 0) return;
    if (state != State::kClosing) return;  // a stale watch closed while still running
    state = State::kClosed;
    // No poll handle watches the socket any more: safe to let libmosquitto close it.
    if (mosq) {
      ReleasePlainWriter();
      mosquitto_destroy(mosq);
      mosq = nullptr;
    }
    Linger::Start(loop, std::exchange(linger_fd, -1));
    if (!detached && callbacks.on_closed) {
      callbacks.on_closed();
      return;  // the callback may have destroyed the public object, and with it us
    }
    if (detached) delete this;
  }

  ~Impl() {
    ReleasePlainWriter();
    if (mosq) mosquitto_destroy(mosq);
    if (linger_fd >= 0) close(linger_fd);
  }

  // A plain connection's writer otherwise goes when the socket is closed on this thread; let it
  // go (writing what it holds) before libmosquitto closes the socket, so that it never outlives
  // this connection whichever thread the close comes from.
  void ReleasePlainWriter() {
    if (writer != nullptr && !writer->tls()) writer->Release();
  }
};

uint64_t RaiseDescriptorLimit(uint64_t wanted) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < wanted) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? wanted : std::min<rlim_t>(wanted, rl.rlim_max);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : static_cast<uint64_t>(rl.rlim_cur);
}

Result<std::unique_ptr<UvMqttClient>> UvMqttClient::Create(uv_loop_t* loop, ClientOptions options,
                                                           ClientCallbacks callbacks) {
  if (loop == nullptr) return MakeError(ErrorCode::kInvalidArgument, "no loop");
  if (options.client_id.empty())
    return MakeError(ErrorCode::kInvalidArgument, "client id is empty");
  if (options.protocol != 4 && options.protocol != 5)
    return MakeError(ErrorCode::kInvalidArgument, "protocol must be 4 or 5");
  if (options.port <= 0 || options.port > 65535)
    return MakeError(ErrorCode::kInvalidArgument, "bad port");
  if (options.keepalive != 0 && (options.keepalive < 5 || options.keepalive > 65535))
    return MakeError(ErrorCode::kInvalidArgument, "keepalive must be 0 or 5..65535 s");
  if (options.reconnect_min.count() <= 0 || options.reconnect_max < options.reconnect_min)
    return MakeError(ErrorCode::kInvalidArgument, "bad reconnect back-off");
  InitLibraryOnce();

  auto impl = std::make_unique<Impl>();
  impl->loop = loop;
  impl->options = std::move(options);
  impl->callbacks = std::move(callbacks);
  const ClientOptions& o = impl->options;

  creating_client = true;
  impl->mosq = mosquitto_new(o.client_id.c_str(), o.clean_start, impl.get());
  creating_client = false;
  if (!impl->mosq) return MakeError(ErrorCode::kResourceExhausted, "mosquitto_new failed");
  mosquitto_int_option(impl->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                       o.protocol == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  mosquitto_int_option(impl->mosq, MOSQ_OPT_TCP_NODELAY, 1);
  // "Threaded" only tells libmosquitto not to write from inside its calls; it starts no thread.
  if (o.hold_acks) mosquitto_threaded_set(impl->mosq, true);
  if (o.send_maximum > 0 &&
      mosquitto_int_option(impl->mosq, MOSQ_OPT_SEND_MAXIMUM, o.send_maximum) != MOSQ_ERR_SUCCESS)
    return MakeError(ErrorCode::kInvalidArgument, "send_maximum must be in 1..65535");
  if (o.receive_maximum > 0 &&
      mosquitto_int_option(impl->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, o.receive_maximum) != MOSQ_ERR_SUCCESS)
    return MakeError(ErrorCode::kInvalidArgument, "receive_maximum must be in 1..65535");
  mosquitto_connect_v5_callback_set(impl->mosq, &Impl::OnConnect);
  mosquitto_disconnect_v5_callback_set(impl->mosq, &Impl::OnDisconnect);
  mosquitto_publish_v5_callback_set(impl->mosq, &Impl::OnPublish);
  mosquitto_subscribe_v5_callback_set(impl->mosq, &Impl::OnSubscribe);
  mosquitto_message_v5_callback_set(impl->mosq, &Impl::OnMessage);

  if (!o.username.empty()) {
    if (mosquitto_username_pw_set(impl->mosq, o.username.c_str(),
                                  o.password.empty() ? nullptr : o.password.c_str()) != 0)
      return MakeError(ErrorCode::kInvalidArgument, "bad username/password");
  }
  if (!o.ca.empty()) {
    int rc = mosquitto_tls_set(impl->mosq, o.ca.c_str(), nullptr,
                               o.cert.empty() ? nullptr : o.cert.c_str(),
                               o.key.empty() ? nullptr : o.key.c_str(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS)
      return MakeError(ErrorCode::kInvalidArgument,
                       "TLS files (ca " + o.ca + ", cert " + o.cert + ", key " + o.key +
                           "): " + mosquitto_strerror(rc));
  } else if (!o.cert.empty() || !o.key.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "a client certificate needs a CA file (TLS)");
  }
  if (o.protocol == 5 && o.session_expiry > 0) {
    // libmosquitto 2.0 accepts CONNECT properties only through the blocking connect call,
    // which stores them before validating its arguments and reuses them on every
    // (re)connect. Giving it an invalid port stores them without connecting; the
    // non-blocking connect that follows sends them.
    mosquitto_property* props = nullptr;
    if (mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                     o.session_expiry) != MOSQ_ERR_SUCCESS)
      return MakeError(ErrorCode::kResourceExhausted, "property");
    int rc = mosquitto_connect_bind_v5(impl->mosq, o.host.c_str(), -1, o.keepalive, nullptr,
                                       props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_INVAL)
      return MakeError(ErrorCode::kInternal, "could not set the session expiry");
  }

  uv_timer_init(loop, &impl->tick);
  impl->tick.data = impl.get();
  uv_timer_init(loop, &impl->retry);
  impl->retry.data = impl.get();
  uv_timer_init(loop, &impl->pause);
  impl->pause.data = impl.get();
  uv_idle_init(loop, &impl->deferred);
  impl->deferred.data = impl.get();
  return std::unique_ptr<UvMqttClient>(new UvMqttClient(impl.release()));
}

UvMqttClient::~UvMqttClient() {
  Impl* impl = impl_;
  impl->detached = true;
  if (impl->state == State::kClosed) {
    if (impl->pending_closes == 0) delete impl;
    return;
  }
  // Free once every handle's close callback has run (HandleClosed deletes a detached Impl).
  impl->Stop();
  if (impl->state == State::kStopping) {
    // Nobody will look at a graceful end any more; close now. DISCONNECT is usually
    // already written (libmosquitto writes at once outside callbacks).
    impl->BeginClose();
  }
}

Status UvMqttClient::Start() {
  if (impl_->state != State::kIdle)
    return MakeError(ErrorCode::kFailedPrecondition, "already started");
  uv_timer_start(&impl_->tick, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->OnTick(); },
                 1000, 1000);
  impl_->Attempt();
  return OkStatus();
}

void UvMqttClient::Stop() { impl_->Stop(); }

void UvMqttClient::ReadSoon() {
  if (!impl_->read_paused || impl_->state != State::kConnected) return;
  impl_->read_paused = false;
  uv_timer_stop(&impl_->pause);
  impl_->Sync();
}

void UvMqttClient::Resolve(uint64_t hold, bool acknowledge) {
  if (!impl_->held || hold != impl_->last_hold || impl_->resolution != Impl::Resolution::kNone) {
    return;
  }
  impl_->resolution = acknowledge ? Impl::Resolution::kAcknowledge : Impl::Resolution::kDrop;
  impl_->Sync();
}

namespace {
// What a failed publish, subscribe or unsubscribe says: the request itself can never go
// (kInvalidArgument: a caller such as the forwarder drops it), or the connection failed under it
// (kUnavailable: try again once connected). libmosquitto writes outside its callbacks at once,
// so a socket that failed shows up here as MOSQ_ERR_ERRNO or MOSQ_ERR_CONN_LOST.
ErrorCode CodeFor(int rc) {
  switch (rc) {
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_MALFORMED_UTF8:
    case MOSQ_ERR_QOS_NOT_SUPPORTED:
    case MOSQ_ERR_OVERSIZE_PACKET:
    case MOSQ_ERR_NOT_SUPPORTED:
    case MOSQ_ERR_DUPLICATE_PROPERTY:
    case MOSQ_ERR_PROTOCOL:
      return ErrorCode::kInvalidArgument;
    default:
      return ErrorCode::kUnavailable;
  }
}
}  // namespace

Result<int> UvMqttClient::Publish(std::string_view topic, ByteView payload, int qos, bool retain,
                                  const UserProperties& user_properties) {
  if (impl_->state != State::kConnected)
    return MakeError(ErrorCode::kUnavailable, "not connected");
  if (qos < 0 || qos > 2) return MakeError(ErrorCode::kInvalidArgument, "qos must be 0..2");
  mosquitto_property* props = nullptr;
  if (!user_properties.empty()) {
    if (impl_->options.protocol != 5)
      return MakeError(ErrorCode::kInvalidArgument, "user properties need MQTT v5");
    for (const auto& p : user_properties) {
      if (mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, p.name.c_str(),
                                             p.value.c_str()) != MOSQ_ERR_SUCCESS) {
        mosquitto_property_free_all(&props);
        return MakeError(ErrorCode::kInvalidArgument, "bad user property");
      }
    }
  }
  std::string t(topic);
  int mid = 0;
  impl_->in_mosq++;
  int rc = mosquitto_publish_v5(impl_->mosq, &mid, t.c_str(), static_cast<int>(payload.size()),
                                payload.data(), qos, retain, props);
  impl_->in_mosq--;
  mosquitto_property_free_all(&props);
  impl_->Sync();
  if (rc != MOSQ_ERR_SUCCESS) {
    return MakeError(CodeFor(rc), std::string("publish ") + t + ": " + mosquitto_strerror(rc));
  }
  return mid;
}

Result<int> UvMqttClient::Subscribe(std::string_view filter, int qos) {
  if (impl_->state != State::kConnected)
    return MakeError(ErrorCode::kUnavailable, "not connected");
  std::string f(filter);
  int mid = 0;
  impl_->in_mosq++;
  int rc = mosquitto_subscribe_v5(impl_->mosq, &mid, f.c_str(), qos, 0, nullptr);
  impl_->in_mosq--;
  impl_->Sync();
  if (rc != MOSQ_ERR_SUCCESS)
    return MakeError(CodeFor(rc), "subscribe " + f + ": " + mosquitto_strerror(rc));
  return mid;
}

Result<int> UvMqttClient::Unsubscribe(std::string_view filter) {
  if (impl_->state != State::kConnected)
    return MakeError(ErrorCode::kUnavailable, "not connected");
  std::string f(filter);
  int mid = 0;
  impl_->in_mosq++;
  int rc = mosquitto_unsubscribe_v5(impl_->mosq, &mid, f.c_str(), nullptr);
  impl_->in_mosq--;
  impl_->Sync();
  if (rc != MOSQ_ERR_SUCCESS)
    return MakeError(CodeFor(rc), "unsubscribe " + f + ": " + mosquitto_strerror(rc));
  return mid;
}

bool UvMqttClient::connected() const { return impl_->state == State::kConnected; }
bool UvMqttClient::closed() const { return impl_->state == State::kClosed; }
const ClientOptions& UvMqttClient::options() const { return impl_->options; }

}  // namespace edgetrust::mqtt
