#include "collector/snapshot_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "collector/log.h"
#include "collector/proc_reader.h"

namespace heapwatch::collector {
namespace fs = std::filesystem;

SnapshotStore::SnapshotStore(std::string data_dir, size_t max_snapshots)
    : dir_(std::move(data_dir) + "/snapshots"), max_snapshots_(max_snapshots) {}

bool SnapshotStore::ValidId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id.find("..") != std::string::npos) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

std::string SnapshotStore::Init() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return "cannot create " + dir_ + ": " + ec.message();
  index_.clear();
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".json" || name.rfind(".tmp", 0) == 0) continue;
    std::string id = entry.path().stem().string();
    std::string error;
    auto doc = Load(id, &error);
    if (!doc) {
      Log(LogLevel::kWarning, "skipping unreadable snapshot", {{"id", id}, {"error", error}});
      continue;
    }
    SnapshotMeta meta{id, doc->value("pid", 0u), doc->value("time", 0.0),
                      doc->value("reason", std::string()), static_cast<uint64_t>(entry.file_size(ec))};
    index_.push_back(std::move(meta));
  }
  // Leftover temporaries from a crash mid-write are garbage.
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().filename().string().rfind(".tmp", 0) == 0) fs::remove(entry.path(), ec);
  }
  std::sort(index_.begin(), index_.end(),
            [](const SnapshotMeta& a, const SnapshotMeta& b) { return a.time < b.time; });
  return CheckWritable();
}

std::string SnapshotStore::CheckWritable() const {
  std::string probe = dir_ + "/.tmp-probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "data dir not writable: " + dir_ + ": " + std::strerror(errno);
  // An empty file can still be created on a full disk: write one block, so
  // that a folder with no room left is reported too (ENOSPC).
  static const char kBlock[4096] = {};
  ssize_t n = ::write(fd, kBlock, sizeof(kBlock));
  int write_errno = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (n != static_cast<ssize_t>(sizeof(kBlock))) {
    return "data dir not writable: " + dir_ + ": " + std::strerror(n < 0 ? write_errno : ENOSPC);
  }
  return {};
}

bool SnapshotStore::WriteFileAtomic(const std::string& name, const std::string& bytes,
                                    std::string* error) {
  std::string final_path = dir_ + "/" + name;
  std::string tmp = dir_ + "/.tmp-" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    *error = "cannot create " + tmp + ": " + std::strerror(errno);
    return false;
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "cannot write " + tmp + ": " + std::strerror(n < 0 ? errno : ENOSPC);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    *error = "cannot flush " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    *error = "cannot rename " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

std::optional<std::string> SnapshotStore::Save(uint32_t pid, double time, const std::string& reason,
                                               nlohmann::json document, const std::string& pprof_gz,
                                               std::string* error) {
  std::time_t secs = static_cast<std::time_t>(time);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  std::string id = std::string(stamp) + "-" + std::to_string(pid) + "-" + std::to_string(++sequence_);
  while (std::any_of(index_.begin(), index_.end(), [&](const SnapshotMeta& m) { return m.id == id; })) {
    id = std::string(stamp) + "-" + std::to_string(pid) + "-" + std::to_string(++sequence_);
  }
  document["id"] = id;
  document["pid"] = pid;
  document["time"] = time;
  document["reason"] = reason;
  std::error_code ec;
  fs::create_directories(dir_, ec);  // the folder may have been removed
  std::string json = document.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!WriteFileAtomic(id + ".pb.gz", pprof_gz, error) || !WriteFileAtomic(id + ".json", json, error)) {
    ::unlink((dir_ + "/" + id + ".pb.gz").c_str());
    ++write_errors_;
    Log(LogLevel::kError, "snapshot not written", {{"pid", pid}, {"reason", reason}, {"error", *error}});
    return std::nullopt;
  }
  ++written_;
  index_.push_back({id, pid, time, reason, json.size() + pprof_gz.size()});
  Prune();
  Log(LogLevel::kInfo, "snapshot written", {{"id", id}, {"pid", pid}, {"reason", reason}});
  return id;
}

void SnapshotStore::Prune() {
  while (index_.size() > max_snapshots_) {
    const std::string& id = index_.front().id;
    ::unlink((dir_ + "/" + id + ".json").c_str());
    ::unlink((dir_ + "/" + id + ".pb.gz").c_str());
    index_.erase(index_.begin());
  }
}

std::vector<SnapshotMeta> SnapshotStore::List() const {
  return {index_.rbegin(), index_.rend()};
}

std::optional<nlohmann::json> SnapshotStore::Load(const std::string& id, std::string* error) const {
  if (!ValidId(id)) {
    *error = "invalid snapshot id";
    return std::nullopt;
  }
  auto text = ReadSmallFile(dir_ + "/" + id + ".json", size_t{1} << 30);
  if (!text) {
    *error = "no such snapshot: " + id;
    return std::nullopt;
  }
  auto doc = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    *error = "snapshot " + id + " is corrupt";
    return std::nullopt;
  }
  return doc;
}

std::optional<std::string> SnapshotStore::LoadPprof(const std::string& id) const {
  if (!ValidId(id)) return std::nullopt;
  return ReadSmallFile(dir_ + "/" + id + ".pb.gz", size_t{1} << 30);
}

}  // namespace heapwatch::collector
