#include "collector/profile_cache.h"

#include <malloc.h>

#include <algorithm>

namespace heapwatch::collector {

ProfileCache::Entry& ProfileCache::Find(const Process& process, SymbolService* symbols, double now) {
  auto find = [&] {
    return std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) {
      return e.pid == process.pid() && e.start_time_ns == process.start_time_ns();
    });
  };
  auto it = find();
  if (it != entries_.end() && (it->builder->Stale(process) || it->bytes > max_bytes_)) Erase(it);
  Fit(&process);
  it = find();
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_ && !entries_.empty()) {
      // The least recently used goes.
      Erase(std::min_element(entries_.begin(), entries_.end(),
                             [](const Entry& a, const Entry& b) { return a.last_used < b.last_used; }));
    }
    entries_.push_back({process.pid(), process.start_time_ns(), now,
                        std::make_unique<ProfileBuilder>(process, symbols), std::make_unique<PprofEncoder>()});
    it = entries_.end() - 1;
    ++stats_.builds;
  } else {
    ++stats_.hits;
  }
  it->last_used = now;
  return *it;
}

const ProfileData& ProfileCache::Update(Entry& entry, const Process& process, double now) {
  const ProfileData& data = entry.builder->Update(process, now);
  entry.bytes = data.ApproxBytes();
  if (entry.bytes > max_bytes_) ++stats_.oversize;
  return data;
}

const ProfileData& ProfileCache::Get(const Process& process, SymbolService* symbols, double now) {
  return Update(Find(process, symbols, now), process, now);
}

std::string ProfileCache::Pprof(const Process& process, SymbolService* symbols, double now,
                                SampleType default_type) {
  Entry& e = Find(process, symbols, now);
  const ProfileData& data = Update(e, process, now);
  // An oversize profile is not kept, so neither is its encoder's state.
  if (e.bytes > max_bytes_) return Gzip(EncodePprof(data, default_type));
  return e.pprof->Encode(data, default_type);
}

void ProfileCache::Fit(const Process* keep) {
  auto kept = [&](const Entry& e) {
    return keep && e.pid == keep->pid() && e.start_time_ns == keep->start_time_ns();
  };
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = !kept(*it) && it->bytes > max_bytes_ ? Erase(it) : it + 1;
  }
  size_t total = 0;
  for (const Entry& e : entries_) total += e.bytes;
  while (total > max_bytes_) {
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!kept(*it) && (victim == entries_.end() || it->last_used < victim->last_used)) victim = it;
    }
    if (victim == entries_.end()) break;
    total -= victim->bytes;
    Erase(victim);
  }
}

void ProfileCache::Expire(double now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = now - it->last_used > idle_seconds_ ? Erase(it) : it + 1;
  }
  Fit(nullptr);
  // Give big profiles' memory back to the system: freed, it would stay in
  // malloc's free lists and in the collector's RSS.
  if (dropped_bytes_ > (size_t{16} << 20)) {
    ::malloc_trim(0);
    dropped_bytes_ = 0;
  }
}

std::vector<ProfileCache::Entry>::iterator ProfileCache::Erase(std::vector<Entry>::iterator it) {
  dropped_bytes_ += it->bytes;
  return entries_.erase(it);
}

}  // namespace heapwatch::collector
