// Allocation where little stack is left, each time with a PROT_NONE guard
// page below: a coroutine on a 16 KiB stack (folly's fibers' default) that
// has used all but 4 KiB of it, a signal handler on an alternate stack of
// 8 KiB (SIGSTKSZ before glibc 2.34), and a thread on a 16 KiB stack that
// has used all but 4 KiB. The allocator needs well under 4 KiB at each;
// libunwind needs more (preload/side_stack.h). Each place allocates and
// frees ROUNDS marker blocks:
//   coroutine 3001..3000+ROUNDS, handler 5001.., thread 7001.. bytes.
// Prints a line a place.
//   shim_small_stacks [ROUNDS=100]
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

namespace {

constexpr size_t kStackBytes = 16 * 1024;
constexpr size_t kAltStackBytes = 8 * 1024;
constexpr size_t kHeadroom = 4 * 1024;
constexpr size_t kPage = 4096;

int g_rounds = 100;

// [guard page][bytes], the usable part returned.
char* MapStack(size_t bytes) {
  void* m = mmap(nullptr, kPage + bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED || mprotect(m, kPage, PROT_NONE) != 0) {
    perror("stack");
    exit(2);
  }
  return static_cast<char*>(m) + kPage;
}

__attribute__((noinline)) size_t AllocateMarkers(size_t first) {
  size_t sum = 0;
  for (int i = 0; i < g_rounds; ++i) {
    auto* p = static_cast<unsigned char*>(malloc(first + static_cast<size_t>(i)));
    if (!p) abort();
    p[0] = static_cast<unsigned char>(i);
    sum += p[0];
    free(p);
  }
  asm volatile("" ::: "memory");
  return sum;
}

// Uses the stack down to `floor` + kHeadroom, then allocates.
__attribute__((noinline)) size_t AllocateNearTheEnd(const char* floor, size_t first) {
  auto here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  size_t pad = here - reinterpret_cast<uintptr_t>(floor) - kHeadroom;
  auto* used = static_cast<volatile char*>(alloca(pad));
  used[0] = 1;
  size_t sum = AllocateMarkers(first);
  asm volatile("" ::: "memory");
  return sum + used[0];
}

// The coroutine.
ucontext_t g_main_context, g_coroutine_context;
char* g_coroutine_stack;
size_t g_coroutine_sum;

__attribute__((noinline)) void CoroutineBody() {
  g_coroutine_sum = AllocateNearTheEnd(g_coroutine_stack, 3001);
  asm volatile("" ::: "memory");
}

// The handler.
size_t g_handler_sum;

__attribute__((noinline)) void OnSignal(int) {
  g_handler_sum = AllocateMarkers(5001);
  asm volatile("" ::: "memory");
}

__attribute__((noinline)) void RaiseSignal() {
  raise(SIGUSR1);
  asm volatile("" ::: "memory");
}

// The thread.
char* g_thread_stack;

__attribute__((noinline)) void* ThreadBody(void*) {
  static size_t sum;
  sum = AllocateNearTheEnd(g_thread_stack, 7001);
  asm volatile("" ::: "memory");
  return &sum;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_rounds = atoi(argv[1]);
  setvbuf(stdout, nullptr, _IOLBF, 0);

  g_coroutine_stack = MapStack(kStackBytes);
  getcontext(&g_coroutine_context);
  g_coroutine_context.uc_stack.ss_sp = g_coroutine_stack;
  g_coroutine_context.uc_stack.ss_size = kStackBytes;
  g_coroutine_context.uc_link = &g_main_context;
  makecontext(&g_coroutine_context, CoroutineBody, 0);
  swapcontext(&g_main_context, &g_coroutine_context);
  printf("coroutine: %d blocks, sum %zu\n", g_rounds, g_coroutine_sum);

  stack_t alt{};
  alt.ss_sp = MapStack(kAltStackBytes);
  alt.ss_size = kAltStackBytes;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaltstack(&alt, nullptr) != 0 || sigaction(SIGUSR1, &sa, nullptr) != 0) {
    perror("signal");
    return 2;
  }
  RaiseSignal();
  printf("handler: %d blocks, sum %zu\n", g_rounds, g_handler_sum);

  g_thread_stack = MapStack(kStackBytes);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, g_thread_stack, kStackBytes);
  pthread_t thread;
  void* result = nullptr;
  if (pthread_create(&thread, &attr, ThreadBody, nullptr) != 0 || pthread_join(thread, &result) != 0) {
    fprintf(stderr, "thread failed\n");
    return 2;
  }
  printf("thread: %d blocks, sum %zu\n", g_rounds, *static_cast<size_t*>(result));
  return 0;
}
