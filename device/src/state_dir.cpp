#include "edgetrust/device/state_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "edgetrust/common/bytes.h"
#include "pem.h"

namespace edgetrust::device {
namespace {

Error IoError(const std::string& what, const std::string& path) {
  return MakeError(ErrorCode::kIo, what + " " + path + ": " + std::strerror(errno));
}

std::string DirName(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes a completed rename durable: the directory entry itself must reach the disk.
Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("open", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return IoError("fsync", dir);
  return OkStatus();
}

Result<std::string> ReadWholeFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, path + " does not exist");
    return IoError("open", path);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return IoError("read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (1u << 20)) {
      ::close(fd);
      return MakeError(ErrorCode::kDataLoss, path + " is larger than 1 MiB");
    }
  }
  ::close(fd);
  return out;
}

}  // namespace

namespace internal {

Status WriteTempFile(const std::string& path, std::string_view content, mode_t mode) {
  const std::string tmp = path + std::string(StateDir::kTempSuffix);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return IoError("create", tmp);
  // open() honours the umask and keeps the mode of a stale file; the mode is part of the contract.
  if (::fchmod(fd, mode) != 0) {
    ::close(fd);
    return IoError("chmod", tmp);
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return IoError("write", tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return IoError("fsync", tmp);
  }
  if (::close(fd) != 0) return IoError("close", tmp);
  return OkStatus();
}

std::string FormatIdentity(const StoredIdentity& identity) {
  std::string out = identity.cert_pem;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += identity.key_pem;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += identity.lifecycle_ca_pem;
  if (!out.empty() && out.back() != '\n') out += '\n';
  // Only a site id ([A-Za-z0-9][A-Za-z0-9._-]{0,63}, as the policy has it) is written: anything
  // else could break the line or carry PEM text that reads back as a block.
  if (IsValidDeviceId(identity.site)) out += "# site: " + identity.site + "\n";
  return out;
}

Result<StoredIdentity> ParseIdentity(std::string_view text) {
  StoredIdentity identity;
  const std::vector<PemBlock> blocks = SplitPem(text);
  for (const PemBlock& block : blocks) {
    if (block.label == "CERTIFICATE") {
      if (identity.cert_pem.empty()) identity.cert_pem = std::string(block.text);
    } else if (block.label == "PRIVATE KEY" || block.label == "EC PRIVATE KEY") {
      if (identity.key_pem.empty()) identity.key_pem = std::string(block.text);
    } else if (block.label == StateDir::kLifecycleCaLabel) {
      if (identity.lifecycle_ca_pem.empty()) identity.lifecycle_ca_pem = std::string(block.text);
    }
  }
  if (identity.cert_pem.empty())
    return MakeError(ErrorCode::kDataLoss, "identity file has no CERTIFICATE block");
  if (identity.key_pem.empty())
    return MakeError(ErrorCode::kDataLoss, "identity file has no PRIVATE KEY block");
  // The site is a line of its own between or after the blocks (what is inside a block belongs to
  // the block); the last one wins. Read as FormatIdentity writes it: a CRLF line ends before its
  // '\r', and a value that is not a site id, which FormatIdentity would drop, is ignored.
  constexpr std::string_view kSiteTag = "# site: ";
  auto block = blocks.begin();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    while (block != blocks.end() &&
           static_cast<size_t>(block->text.data() + block->text.size() - text.data()) <= pos) {
      ++block;
    }
    const bool in_block =
        block != blocks.end() && static_cast<size_t>(block->text.data() - text.data()) <= pos;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (!in_block && line.starts_with(kSiteTag) && IsValidDeviceId(line.substr(kSiteTag.size())))
      identity.site = std::string(line.substr(kSiteTag.size()));
    pos = end + 1;
  }
  return identity;
}

}  // namespace internal

Status WriteFileAtomic(const std::string& path, std::string_view content, mode_t mode) {
  ET_RETURN_IF_ERROR(internal::WriteTempFile(path, content, mode));
  const std::string tmp = path + std::string(StateDir::kTempSuffix);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return IoError("rename", tmp);
  return SyncDir(DirName(path));
}

Result<StateDir> StateDir::Open(const std::string& path) {
  if (path.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty state directory");
  // Like mkdir -p: a fresh device may be pointed at DIR/<id> before DIR exists.
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) return IoError("mkdir", parent);
  }
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return IoError("mkdir", path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return IoError("stat", path);
  if (!S_ISDIR(st.st_mode))
    return MakeError(ErrorCode::kInvalidArgument, path + " is not a directory");

  const std::string lock_path = path + "/.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("open", lock_path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK)
      return MakeError(ErrorCode::kFailedPrecondition,
                       "state directory " + path + " is in use by another agent");
    errno = err;
    return IoError("flock", lock_path);
  }

  // A temp file is the trace of a write that never reached its rename: it is not state.
  if (DIR* dir = ::opendir(path.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      std::string_view name = entry->d_name;
      if (name.size() > kTempSuffix.size() && name.ends_with(kTempSuffix))
        ::unlinkat(::dirfd(dir), entry->d_name, 0);
    }
    ::closedir(dir);
  }
  return StateDir(path, fd);
}

StateDir::StateDir(StateDir&& other) noexcept
    : path_(std::move(other.path_)), lock_fd_(std::exchange(other.lock_fd_, -1)) {}

StateDir& StateDir::operator=(StateDir&& other) noexcept {
  if (this != &other) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    path_ = std::move(other.path_);
    lock_fd_ = std::exchange(other.lock_fd_, -1);
  }
  return *this;
}

StateDir::~StateDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Result<std::optional<StoredIdentity>> StateDir::LoadIdentity() const {
  auto text = ReadWholeFile(IdentityPath());
  if (!text.ok()) {
    if (text.error().code == ErrorCode::kNotFound) return std::optional<StoredIdentity>();
    return std::move(text).error();
  }
  auto identity = internal::ParseIdentity(*text);
  if (!identity.ok())
    return MakeError(ErrorCode::kDataLoss, IdentityPath() + ": " + identity.error().message);
  return std::optional<StoredIdentity>(std::move(identity).value());
}

Status StateDir::SaveIdentity(const StoredIdentity& identity) {
  if (identity.cert_pem.empty() || identity.key_pem.empty())
    return MakeError(ErrorCode::kInvalidArgument, "identity needs a certificate and a key");
  return WriteFileAtomic(IdentityPath(), internal::FormatIdentity(identity), 0600);
}

Status StateDir::ClearIdentity() {
  if (::unlink(IdentityPath().c_str()) != 0 && errno != ENOENT)
    return IoError("unlink", IdentityPath());
  return SyncDir(path_);
}

}  // namespace edgetrust::device
