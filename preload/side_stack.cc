#include "side_stack.h"

#include <sys/mman.h>

#include <atomic>

#include "raw_memory.h"
#include "raw_syscall.h"

namespace heapwatch::preload {
namespace {

constexpr uintptr_t kGuardBytes = 4096;

struct SideStack {
  char* base;     // the guard page's start; nullptr until mapped
  bool released;  // the thread is exiting
  bool on_shared;  // inside RunOnSharedStack's call
};
__thread SideStack t_side __attribute__((tls_model("initial-exec")));

// The shared stack, mapped at its first use and kept; g_shared_taken is its
// lock.
std::atomic<bool> g_shared_taken{false};
char* g_shared_base = nullptr;

// A stack over its guard page (the guard's start), or nullptr.
char* MapStack() {
  auto* p = static_cast<char*>(MapZeroed(kGuardBytes + kSideStackBytes));
  if (!p) return nullptr;
  // Address space for the guard too, then the guard taken away: an overflow
  // faults instead of writing over whatever lies below.
  if (sys::Mprotect(p, kGuardBytes, PROT_NONE) != 0) {
    Unmap(p, kGuardBytes + kSideStackBytes);
    return nullptr;
  }
  return p;
}

char* Top(char* base) { return base + kGuardBytes + kSideStackBytes; }

}  // namespace
}  // namespace heapwatch::preload

// uint32_t HeapwatchCallOnStack(void** out, uint32_t max, void* top,
//                               StackFunction fn): fn(out, max) with rsp = top
// (16-aligned). rbp keeps this frame on the host's stack, and the CFI after
// `mov %rsp, %rbp` says CFA = rbp + 16: the rule of any frame-pointer
// function, which libunwind's trace cache takes as a standard frame.
extern "C" uint32_t HeapwatchCallOnStack(void** out, uint32_t max, void* top,
                                         heapwatch::preload::StackFunction fn)
    __attribute__((visibility("hidden")));
asm(R"(
  .text
  .p2align 4
  .globl HeapwatchCallOnStack
  .hidden HeapwatchCallOnStack
  .type HeapwatchCallOnStack, @function
HeapwatchCallOnStack:
  .cfi_startproc
  pushq %rbp
  .cfi_def_cfa_offset 16
  .cfi_offset %rbp, -16
  movq %rsp, %rbp
  .cfi_def_cfa_register %rbp
  movq %rdx, %rsp
  callq *%rcx
  movq %rbp, %rsp
  popq %rbp
  .cfi_def_cfa %rsp, 8
  retq
  .cfi_endproc
  .size HeapwatchCallOnStack, .-HeapwatchCallOnStack
)");

namespace heapwatch::preload {

uint32_t RunOnSideStack(StackFunction fn, void** out, uint32_t max) {
  SideStack& t = t_side;
  if (!t.base && (t.released || !(t.base = MapStack()))) return 0;
  return HeapwatchCallOnStack(out, max, Top(t.base), fn);
}

void LeaveSharedStack() {
  if (!t_side.on_shared) return;
  t_side.on_shared = false;
  g_shared_taken.store(false, std::memory_order_release);
}

uint32_t RunOnSharedStack(StackFunction fn, void** out, uint32_t max) {
  if (g_shared_taken.exchange(true, std::memory_order_acquire)) return 0;
  t_side.on_shared = true;
  if (!g_shared_base) g_shared_base = MapStack();
  uint32_t n = g_shared_base ? HeapwatchCallOnStack(out, max, Top(g_shared_base), fn) : 0;
  LeaveSharedStack();
  return n;
}

HEAPWATCH_FORK_CHILD_CODE void SideStackForkChild() {
  if (!t_side.on_shared) g_shared_taken.store(false, std::memory_order_relaxed);
}

bool OnSideStack(uintptr_t address) {
  const SideStack& t = t_side;
  auto lo = reinterpret_cast<uintptr_t>(t.base) + kGuardBytes;
  return t.base && address >= lo && address < lo + kSideStackBytes;
}

void DropSideStack() {
  SideStack& t = t_side;
  if (t.base) Unmap(t.base, kGuardBytes + kSideStackBytes);
  t.base = nullptr;
}

void ReleaseSideStack() {
  t_side.released = true;
  DropSideStack();
}

}  // namespace heapwatch::preload
