// Snapshots: evidence written to --data-dir so it outlives the application
// and the collector. Each snapshot is <id>.pb.gz (pprof) plus <id>.json (the
// profile with names, leak suspects, timeline, process facts); the .json is
// written last and its presence marks a complete snapshot.
//
// Writes are crash-safe: temporary file, fsync, rename, fsync of the folder.
// A full disk or an unwritable folder is an error returned and counted, never
// a crash, and never damages snapshots already written. Loop thread only.
#ifndef HEAPWATCH_COLLECTOR_SNAPSHOT_STORE_H_
#define HEAPWATCH_COLLECTOR_SNAPSHOT_STORE_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace heapwatch::collector {

struct SnapshotMeta {
  std::string id;
  uint32_t pid = 0;
  double time = 0;
  std::string reason;
  uint64_t size_bytes = 0;
};

class SnapshotStore {
 public:
  SnapshotStore(std::string data_dir, size_t max_snapshots);

  // Creates the folder if needed and indexes what is there. Returns an error
  // message (the collector keeps running; readiness reports it).
  std::string Init();
  // Whether a file can be created in the folder now (for /readyz).
  std::string CheckWritable() const;

  // Writes a snapshot. `document` gets "id", "pid", "time" and "reason" set.
  // Returns the id, or nullopt with *error set.
  std::optional<std::string> Save(uint32_t pid, double time, const std::string& reason,
                                  nlohmann::json document, const std::string& pprof_gz,
                                  std::string* error);

  std::vector<SnapshotMeta> List() const;  // newest first
  std::optional<nlohmann::json> Load(const std::string& id, std::string* error) const;
  std::optional<std::string> LoadPprof(const std::string& id) const;
  // Ids are [A-Za-z0-9_.-]+ without "..": never a path outside the folder.
  static bool ValidId(const std::string& id);

  uint64_t write_errors() const { return write_errors_; }
  uint64_t written() const { return written_; }
  const std::string& dir() const { return dir_; }

 private:
  bool WriteFileAtomic(const std::string& name, const std::string& bytes, std::string* error);
  void Prune();

  std::string dir_;
  size_t max_snapshots_;
  std::vector<SnapshotMeta> index_;  // oldest first
  uint64_t sequence_ = 0;
  uint64_t write_errors_ = 0;
  uint64_t written_ = 0;
};

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_SNAPSHOT_STORE_H_
