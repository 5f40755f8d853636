// The device's persistent state: one directory that holds the operational identity (certificate +
// private key in one file, so the pair is replaced by a single rename) and what the site told it at
// enrollment. A crash at any instant leaves either the previous identity or the new one, never a
// mix: every file is written to a temporary name, fsynced, renamed over the old one, and the
// directory is fsynced. Leftover temporary files are ignored (and removed on open).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "edgetrust/common/result.h"

namespace edgetrust::device {

// Writes `content` to `path` atomically with `mode` (the umask does not apply).
Status WriteFileAtomic(const std::string& path, std::string_view content, mode_t mode);

// The operational identity as stored: PEM texts, checked by the caller (see identity.h).
struct StoredIdentity {
  std::string cert_pem;  // the operational certificate
  std::string key_pem;   // its private key (PKCS#8 PEM)
  std::string site;      // site id from the enrollment response, may be empty
  // The certificate whose key signs lifecycle commands, as a PEM block labelled
  // kLifecycleCaLabel (TLS libraries skip it); may be empty.
  std::string lifecycle_ca_pem;

  bool operator==(const StoredIdentity&) const = default;
};

// A state directory held by exactly one agent (an exclusive flock on DIR/.lock for its lifetime).
// Move-only.
class StateDir {
 public:
  // Creates the directory (0700) when missing. kFailedPrecondition if another agent holds it.
  static Result<StateDir> Open(const std::string& path);

  StateDir(StateDir&& other) noexcept;
  StateDir& operator=(StateDir&& other) noexcept;
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;
  ~StateDir();

  const std::string& path() const { return path_; }
  // The single file that holds certificate + key (both PEM); usable as both the certificate and the
  // key file of a TLS client (OpenSSL skips the blocks it does not want).
  std::string IdentityPath() const { return path_ + "/" + std::string(kIdentityFile); }

  // nullopt when the device has never enrolled. kDataLoss when the file exists but is unreadable as
  // an identity (the caller then falls back to the birth certificate and re-enrolls).
  Result<std::optional<StoredIdentity>> LoadIdentity() const;
  // Replaces the identity atomically (file mode 0600).
  Status SaveIdentity(const StoredIdentity& identity);
  // Forgets the identity (after a wipe): the device is back to its birth certificate.
  Status ClearIdentity();

  static constexpr std::string_view kIdentityFile = "operational.pem";
  static constexpr std::string_view kTempSuffix = ".tmp";
  static constexpr std::string_view kLifecycleCaLabel = "EDGETRUST LIFECYCLE CA";

 private:
  StateDir(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}

  std::string path_;
  int lock_fd_ = -1;
};

namespace internal {
// The identity file's text: the certificate PEM, the key PEM, the lifecycle CA block, then
// "# site: <id>" when known.
std::string FormatIdentity(const StoredIdentity& identity);
Result<StoredIdentity> ParseIdentity(std::string_view text);
// First step of WriteFileAtomic (exposed so tests can leave a temp file behind as a crash would):
// writes and fsyncs path + kTempSuffix.
Status WriteTempFile(const std::string& path, std::string_view content, mode_t mode);
}  // namespace internal

}  // namespace edgetrust::device
