#include "recorder_tables.h"

#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "raw_memory.h"
#include "raw_syscall.h"
#include "libc_functions.h"
#include "recorder.h"
#include "sender.h"
#include "side_stack.h"

namespace heapwatch::preload {

namespace {

// The stack depot's size for a table of `table_slots`: one bucket a slot (at
// most 2^20), room for 32 frames a bucket.
uint64_t DepotBuckets(const Config& c) { return c.table_slots < (1u << 20) ? c.table_slots : (1u << 20); }

// The address space the shim may take in a process that samples, at most:
// its tables, the sender's, the stack samples share (side_stack.h), the
// images of libunwind and liblzma (~1 MiB; 2 counted), libunwind's trace
// caches (256 KiB a thread that holds one; counted up to the default cap of
// 32 also where there is none, below R = 64 KiB: each belongs to a live
// thread, whose own stack is some 32 times that). Not an arena of glibc's
// malloc for the sender's thread (64 MiB): its allocations come from the
// shim's own (recorder.h, SenderHeapAlloc).
uint64_t AddressSpaceNeeded(const Config& c) {
  constexpr uint64_t kMiB = 1 << 20;
  const uint64_t caches = c.unwind_caches < kDefaultUnwindCaches ? c.unwind_caches : kDefaultUnwindCaches;
  return LiveTable::AddressSpace(c.table_slots) +
         StackDepot::AddressSpace(DepotBuckets(c), DepotBuckets(c) * 32) +
         EventRing::AddressSpace(c.ring_slots) + SenderAddressSpace() + kSideStackBytes + kPageBytes +
         2 * kMiB + caches * (256 << 10);
}

}  // namespace

bool AddressSpaceAllows(const Config& c) {
  rlimit limit;
  if (sys::Getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return true;
  const uint64_t need = AddressSpaceNeeded(c);
  if (limit.rlim_cur / 10 >= need) return true;
  char detail[200];
  Libc().snprintf(detail, sizeof detail,
           "RLIMIT_AS is %llu MiB, and the shim may map up to %llu MiB; it profiles under a "
           "limit of %llu MiB or more",
           static_cast<unsigned long long>(limit.rlim_cur >> 20),
           static_cast<unsigned long long>((need + (1 << 20) - 1) >> 20),
           static_cast<unsigned long long>((10 * need + (1 << 20) - 1) >> 20));
  SayOnce("rlimit-as", "profiling disabled: ", detail);
  return false;
}

int WaitForTables(int state) {
  for (int i = 0; i < 1000 && state == kTablesMapping; ++i) {
    timespec ts{0, 1000000};
    syscall(SYS_nanosleep, &ts, nullptr);  // not nanosleep(): a cancellation point
    state = g_shim.tables.load(std::memory_order_acquire);
  }
  return state;
}

__attribute__((noinline, cold)) bool MapTables() {
  int state = kTablesNone;
  if (g_shim.tables.compare_exchange_strong(state, kTablesMapping, std::memory_order_acq_rel)) {
    const Config& c = g_shim.config;
    bool ok = AddressSpaceAllows(c) && (g_shim.table.initialized() || g_shim.table.Init(c.table_slots)) &&
              g_shim.depot.Init(DepotBuckets(c), DepotBuckets(c) * 32) && g_shim.ring.Init(c.ring_slots);
    g_shim.tables.store(ok ? kTablesMapped : kTablesFailed, std::memory_order_release);
    if (!ok) g_shim.state.store(static_cast<int>(ShimState::kOff), std::memory_order_release);
    return ok;
  }
  return WaitForTables(state) == kTablesMapped;
}

}  // namespace heapwatch::preload
