// Reads a process's memory figures from procfs and its memory cgroup (v1 or
// v2). Plain file reads, no caching; missing files give nullopt, never errors.
//
// The cgroup is found from /proc/<pid>/cgroup. Its files are looked up first
// under the collector's own cgroup mount (right when the collector shares the
// host's or the pod's cgroup namespace) and then through /proc/<pid>/root,
// i.e. inside the application container's own view of /sys/fs/cgroup, which
// is how a sidecar in its own container sees its neighbour's limit.
#ifndef HEAPWATCH_COLLECTOR_PROC_READER_H_
#define HEAPWATCH_COLLECTOR_PROC_READER_H_

#include <cstdint>
#include <optional>
#include <string>

namespace heapwatch::collector {

struct CgroupMemory {
  int version = 0;                  // 1 or 2; 0: not found
  std::string path;                 // the directory the figures came from
  std::optional<uint64_t> usage;    // memory.usage_in_bytes / memory.current
  std::optional<uint64_t> limit;    // memory.limit_in_bytes / memory.max; nullopt: unlimited
};

class ProcReader {
 public:
  explicit ProcReader(std::string proc_root = "/proc", std::string cgroup_root = "/sys/fs/cgroup");

  bool Exists(uint32_t pid) const;
  // Resident set size in bytes (VmRSS).
  std::optional<uint64_t> Rss(uint32_t pid) const;
  CgroupMemory Cgroup(uint32_t pid) const;
  // The collector's own figures, for /metrics.
  std::optional<uint64_t> SelfRss() const;
  std::optional<double> SelfCpuSeconds() const;

 private:
  std::string proc_root_;
  std::string cgroup_root_;
};

// Reads a whole small file; nullopt when it cannot be read.
std::optional<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 16);
// "max\n" and "9223372036854771712\n" (v1's unlimited) give nullopt.
std::optional<uint64_t> ParseCgroupLimit(const std::string& text);

}  // namespace heapwatch::collector

#endif  // HEAPWATCH_COLLECTOR_PROC_READER_H_
