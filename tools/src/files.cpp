#include "files.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

namespace edgetrust::tools {

namespace fs = std::filesystem;

namespace {

Error IoError(const std::string& path, int err) {
  return MakeError(ErrorCode::kIo, path + ": " + std::strerror(err));
}

std::string TempSibling(const std::string& path) {
  static std::mt19937_64 rng{std::random_device{}()};
  return path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(rng() % 1000000);
}

}  // namespace

bool FileExists(const std::string& path) {
  struct stat st{};
  return lstat(path.c_str(), &st) == 0;
}

Status RefuseExisting(const std::vector<std::string>& paths, bool force) {
  if (force) return OkStatus();
  for (const auto& p : paths) {
    if (FileExists(p)) {
      return MakeError(ErrorCode::kAlreadyExists,
                       p + ": already exists (use --force to overwrite)");
    }
  }
  return OkStatus();
}

Status WriteFileAtomic(const std::string& path, const std::string& content, unsigned mode,
                       bool force, Durability durability) {
  std::string tmp = TempSibling(path);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0777);
  if (fd < 0) return IoError(path, errno);
  // The umask may have narrowed (or, for keys, we insist on) the mode: set it exactly.
  bool ok = fchmod(fd, mode & 0777) == 0;
  size_t done = 0;
  while (ok && done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (ok && durability == Durability::kSync) ok = fsync(fd) == 0;
  int saved = errno;
  close(fd);
  if (!ok) {
    unlink(tmp.c_str());
    return IoError(path, saved);
  }
  int rc = force ? rename(tmp.c_str(), path.c_str()) : link(tmp.c_str(), path.c_str());
  saved = errno;
  unlink(tmp.c_str());  // after link(): drops the temporary name; after rename(): already gone
  if (rc != 0) {
    if (!force && saved == EEXIST) {
      return MakeError(ErrorCode::kAlreadyExists,
                       path + ": already exists (use --force to overwrite)");
    }
    return IoError(path, saved);
  }
  return OkStatus();
}

Status SyncFilesystem(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(path, errno);
  int rc = syncfs(fd);
  int saved = errno;
  close(fd);
  if (rc != 0) return IoError(path, saved);
  return OkStatus();
}

Result<std::string> ReadTextFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return MakeError(ErrorCode::kNotFound, path + ": no such file");
    return IoError(path, err);
  }
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return IoError(path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

Status MakeDirectories(const std::string& path, unsigned mode) {
  std::error_code ec;
  bool created = fs::create_directories(path, ec);
  if (ec) return MakeError(ErrorCode::kIo, path + ": " + ec.message());
  if (created && chmod(path.c_str(), mode) != 0) return IoError(path, errno);
  if (!fs::is_directory(path, ec)) {
    return MakeError(ErrorCode::kIo, path + ": exists and is not a directory");
  }
  return OkStatus();
}

std::string AbsolutePath(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) return path;
  std::string out = abs.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string ExecutableDirectory() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return exe.parent_path().string();
}

std::optional<Owner> BrokerOwner() {
  if (geteuid() != 0) return std::nullopt;
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (getpwnam_r("mosquitto", &pw, buf, sizeof buf, &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return Owner{pw.pw_uid, pw.pw_gid};
}

Status ChangeOwner(const std::string& path, const Owner& owner) {
  if (lchown(path.c_str(), owner.uid, owner.gid) != 0) return IoError(path, errno);
  return OkStatus();
}

}  // namespace edgetrust::tools
