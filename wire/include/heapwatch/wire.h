// heapwatch wire format: the one contract between the shim (preload/) and the
// collector (collector/). Header-only, no heap, no exceptions, usable from the
// shim's restricted world and from the collector alike.
//
// A connection is a Unix stream socket carrying frames. Every frame is a
// FrameHeader followed by `length` payload bytes (length excludes the header and
// is at most kMaxFrameBytes). Integers are little-endian, the host order of every
// platform heapwatch supports (the shim and collector run on the same kernel).
//
// Session, in order:
//   kHello                                   exactly once, first
//   kModulesReset, kModule*                  at start and whenever the set of
//                                            loaded objects changes
//   kStack                                   before the first event naming it
//   kEvents                                  batches of EventRecord
//   kResyncBegin, (kStack|kEvents)*, kResyncEnd
//                                            the shim's whole live-sample table;
//                                            at start, after a reconnect and after
//                                            any drop. The collector replaces its
//                                            view of the live heap with it.
//   kStats                                   periodically, cumulative counters
//
// Stacks are identified by a 64-bit id the shim chooses (a hash of the program
// counters), unique within one process.
//
// Unload epochs. An address range can hold different objects over a
// process's life (one dlclose'd, another dlopen'ed in its place), so the
// same pcs can mean different code. The shim counts unloads (the counter
// moves on every dlclose) and says which count a stack and a module map
// belong to: each kModule carries the count when its map was read
// (Module::epoch), and a stack id's top kStackEpochBits bits are the count's
// low bits when the stack was captured. The collector names a stack's pcs
// after the maps of its epoch. Shims that predate this send Module::epoch 0;
// their stack ids are opaque, and the collector names a stack after the map
// current when it arrives. Unloads made inside glibc without dlclose (its own
// NSS or iconv modules, in practice never unloaded before exit) do not move
// the count.
#ifndef HEAPWATCH_WIRE_H_
#define HEAPWATCH_WIRE_H_

#include <stddef.h>
#include <stdint.h>

namespace heapwatch::wire {

inline constexpr uint32_t kMagic = 0x31505748;  // "HWP1"
inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kMaxFrameBytes = 1u << 20;
inline constexpr uint32_t kMaxFrames = 256;     // stack depth the wire accepts
inline constexpr uint32_t kMaxPathBytes = 4096;
inline constexpr uint32_t kMaxBuildIdBytes = 64;

enum class FrameType : uint16_t {
  kHello = 1,
  kModulesReset = 2,
  kModule = 3,
  kStack = 4,
  kEvents = 5,
  kResyncBegin = 6,
  kResyncEnd = 7,
  kStats = 8,
};

struct FrameHeader {
  uint32_t length;  // payload bytes after this header
  uint16_t type;    // FrameType
  uint16_t reserved;
};
static_assert(sizeof(FrameHeader) == 8);

// Payload of kHello, followed by `exe_len` bytes of the executable's path
// (not NUL-terminated).
struct Hello {
  uint32_t magic;
  uint16_t version;
  uint16_t exe_len;
  uint32_t pid;   // informative: the collector trusts SO_PEERCRED instead
  uint32_t ppid;
  uint64_t sample_bytes;    // mean bytes between samples (R); 1 = every allocation
  uint64_t start_time_ns;   // CLOCK_REALTIME when this process's shim started;
                            // (pid, start_time_ns) names one process instance
  uint32_t max_frames;
  uint32_t reserved;
};
static_assert(sizeof(Hello) == 40);

// Payload of kModule, followed by build_id_len bytes of build-id and then
// path_len bytes of path. Addresses are runtime addresses in the process.
struct Module {
  uint64_t load_bias;  // dlpi_addr: runtime address = ELF vaddr + load_bias
  uint64_t start;      // lowest runtime address of an executable PT_LOAD
  uint64_t end;        // one past the highest such address
  uint64_t file_offset;  // p_offset of the first executable PT_LOAD
  uint16_t build_id_len;
  uint16_t path_len;
  // kEpochStamped | the low 31 bits of the unload epoch when this map was
  // read (the same in every kModule of one map); 0 from older shims.
  uint32_t epoch;
};
static_assert(sizeof(Module) == 40);
inline constexpr uint32_t kEpochStamped = 0x80000000u;
// A stack id's top bits: the unload epoch's low bits (stamped shims only).
inline constexpr uint32_t kStackEpochBits = 12;

// Payload of kStack, followed by `depth` uint64_t program counters, innermost
// first. The innermost frame is the allocation site's caller of malloc; return
// addresses are sent as they are (the collector subtracts 1 for lookups).
struct Stack {
  uint64_t stack_id;
  uint32_t depth;
  uint32_t reserved;
};
static_assert(sizeof(Stack) == 16);

enum class EventKind : uint32_t {
  kAlloc = 1,
  kFree = 2,
};

// kEvents payload: uint32_t count, uint32_t reserved, then `count` EventRecords
// in the order they happened in the process.
struct EventRecord {
  uint32_t kind;      // EventKind
  uint32_t tid;
  uint64_t address;
  uint64_t size;      // requested bytes; 0 for frees
  uint64_t stack_id;  // 0 for frees
  uint64_t time_ns;   // CLOCK_REALTIME; from the shim, as its sender last noted
                      // it (at most ~0.1 s old, up to 2 s while a write blocks)
};
static_assert(sizeof(EventRecord) == 40);

struct EventsHeader {
  uint32_t count;
  uint32_t reserved;
};
static_assert(sizeof(EventsHeader) == 8);
inline constexpr uint32_t kMaxEventsPerFrame =
    (kMaxFrameBytes - sizeof(EventsHeader)) / sizeof(EventRecord);

// kResyncBegin / kResyncEnd: a ResyncMarker payload.
struct ResyncMarker {
  uint64_t generation;  // increases with each resync of this process
  uint64_t live_count;  // kResyncEnd: samples sent in this resync
};
static_assert(sizeof(ResyncMarker) == 16);

// kStats payload: cumulative counters since the shim started in this process.
struct Stats {
  uint64_t sampled_allocs;
  uint64_t sampled_frees;
  uint64_t dropped_events;   // ring full or not connected
  uint64_t table_full;       // sample not recorded: live table full
  uint64_t unwind_failures;
  uint64_t reconnects;
  uint64_t live_samples;     // entries in the live table now
  uint64_t bytes_sent;
};
static_assert(sizeof(Stats) == 64);

}  // namespace heapwatch::wire

#endif  // HEAPWATCH_WIRE_H_
