// A bounded least-recently-used map with counted evictions.
//
// Bounded two ways: by entry count and by an approximate byte cost the caller
// gives with each value (symbolized locations vary a lot in size, so a count
// alone would not bound memory). Whichever limit is hit first evicts from the
// cold end. Not thread-safe: the owner holds a lock around every call.
#ifndef HEAPWATCH_SYMBOLIZER_LRU_CACHE_H_
#define HEAPWATCH_SYMBOLIZER_LRU_CACHE_H_

#include <stddef.h>
#include <stdint.h>

#include <list>
#include <unordered_map>
#include <utility>

namespace heapwatch::symbolizer {

template <typename Key, typename Value, typename Hash = std::hash<Key>>
class LruCache {
 public:
  // max_entries == 0 means the cache holds nothing; max_cost == 0 means no
  // byte limit.
  LruCache(size_t max_entries, size_t max_cost)
      : max_entries_(max_entries), max_cost_(max_cost) {}

  LruCache(const LruCache&) = delete;
  LruCache& operator=(const LruCache&) = delete;

  // Returns the value and marks it most recently used, or nullptr. The pointer
  // stays valid until the next non-const call.
  Value* Find(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    entries_.splice(entries_.begin(), entries_, it->second);
    return &it->second->value;
  }

  // Inserts or replaces, then evicts until both limits hold. An entry whose
  // own cost exceeds max_cost is not stored.
  void Put(const Key& key, Value value, size_t cost) {
    Erase(key);
    if (max_entries_ == 0 || (max_cost_ != 0 && cost > max_cost_)) return;
    entries_.push_front(Entry{key, std::move(value), cost});
    index_.emplace(key, entries_.begin());
    cost_ += cost;
    while (index_.size() > max_entries_ || (max_cost_ != 0 && cost_ > max_cost_)) {
      EvictOldest();
    }
  }

  bool Erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    cost_ -= it->second->cost;
    entries_.erase(it->second);
    index_.erase(it);
    return true;
  }

  size_t size() const { return index_.size(); }
  size_t cost() const { return cost_; }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    Key key;
    Value value;
    size_t cost;
  };

  void EvictOldest() {
    Entry& oldest = entries_.back();
    cost_ -= oldest.cost;
    index_.erase(oldest.key);
    entries_.pop_back();
    ++evictions_;
  }

  size_t max_entries_;
  size_t max_cost_;
  size_t cost_ = 0;
  uint64_t evictions_ = 0;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<Key, typename std::list<Entry>::iterator, Hash> index_;
};

}  // namespace heapwatch::symbolizer

#endif  // HEAPWATCH_SYMBOLIZER_LRU_CACHE_H_
