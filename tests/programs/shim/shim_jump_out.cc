// A signal handler that siglongjmps out of whatever it interrupted, as
// timeout and fault handlers do (with HOW=builtin, GCC's __builtin_longjmp,
// which runs no cleanup; with HOW=exit, it ends its thread there with
// pthread_exit), here only when that is the profiler's own code:
// libheapwatch.so's or libunwind's (WHERE=all), libunwind's alone
// (WHERE=unwind), or libheapwatch.so's from offset START to END (WHERE=
// START-END, hex: one function, found with nm). A sample abandoned halfway.
// A thread allocates (at R = 1 under the shim, so most of its time is in samples)
// with a CPU-time timer whose handler jumps, until JUMPS jumps; then, while
// that thread waits without allocating, main forks FORKS children that
// allocate and exit; then the thread allocates MARKERS blocks of 77,777
// bytes, keeps them, and main prints "jumps=J forks=F hung=H failed=X
// cancellable=C" (C: whether that thread could be cancelled after them),
// and waits SETTLE_MS before it exits with them still allocated. With
// HOW=exit, JUMPS threads in turn allocate until the handler ends them,
// then main forks and allocates the markers.
// A child not done within 5 s counts as hung and is killed. Exits 1 if a
// child hung or failed, 3 if the jumps did not happen within 30 s, 4 if
// under the shim the code to jump out of is not there (libunwind is loaded
// at the first sample: the program waits 5 s for it).
//   shim_jump_out [JUMPS=20] [FORKS=5] [MARKERS=50] [WHERE=all] [SETTLE_MS=0] [HOW=jump]
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "fork_child.h"

namespace {

struct Range {
  uintptr_t lo, hi;
};
Range g_ranges[16];
int g_range_count = 0;

sigjmp_buf g_jump;
volatile sig_atomic_t g_armed = 0;
bool g_exit = false;     // HOW=exit
bool g_builtin = false;  // HOW=builtin
void* g_builtin_jump[5];
std::atomic<int> g_jumps{0};
std::atomic<bool> g_forked{false};
std::atomic<bool> g_jumped_enough{false};
// Whether the thread that allocated the markers could be cancelled then (a
// sample disables cancellation while it runs).
bool g_cancellable = false;

struct Where {
  bool shim, unwind;
  uintptr_t start, end;  // within the shim; 0, 0 for all of it
};

// The executable segments of the profiler's objects (or the shim's range).
int FindProfilerCode(struct dl_phdr_info* info, size_t, void* data) {
  const Where& where = *static_cast<const Where*>(data);
  const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  bool shim = strstr(name, "libheapwatch") != nullptr;
  if (!(shim && where.shim) && !(strstr(name, "libunwind") != nullptr && where.unwind)) return 0;
  if (shim && where.end != 0) {
    g_ranges[g_range_count++] = {info->dlpi_addr + where.start, info->dlpi_addr + where.end};
    return 0;
  }
  for (int i = 0; i < info->dlpi_phnum && g_range_count < 16; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    g_ranges[g_range_count++] = {lo, lo + ph.p_memsz};
  }
  return 0;
}

int FindObject(struct dl_phdr_info* info, size_t, void* data) {
  auto* what = static_cast<const char**>(data);
  if (info->dlpi_name == nullptr || strstr(info->dlpi_name, *what) == nullptr) return 0;
  *what = nullptr;
  return 1;
}

bool Loaded(const char* name) {
  dl_iterate_phdr(FindObject, &name);
  return name == nullptr;
}

// The shim loads libunwind at the process's first sample (its sender does):
// allocates until it is there, 5 s at most.
void AwaitLibunwind() {
  if (!Loaded("libheapwatch")) return;
  for (int i = 0; i < 5000 && !Loaded("libunwind"); ++i) {
    void* p = malloc(4096);
    asm volatile("" : : "r"(p) : "memory");
    free(p);
    usleep(1000);
  }
}

void OnTimer(int, siginfo_t*, void* context) {
  if (!g_armed) return;
  auto* uc = static_cast<ucontext_t*>(context);
  auto pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  for (int i = 0; i < g_range_count; ++i) {
    if (pc >= g_ranges[i].lo && pc < g_ranges[i].hi) {
      g_armed = 0;
      if (g_exit) pthread_exit(nullptr);
      if (g_builtin) __builtin_longjmp(g_builtin_jump, 1);
      siglongjmp(g_jump, 1);
    }
  }
}

__attribute__((noinline)) void Churn(time_t deadline) {
  for (unsigned seed = 1; time(nullptr) < deadline; ++seed) {
    void* p = malloc(32 + seed % 256);
    if (p != nullptr) memset(p, 1, 8);
    asm volatile("" : : "r"(p) : "memory");
    free(p);
  }
}

__attribute__((noinline)) void AllocateMarkers(std::vector<void*>* kept, int markers) {
  for (int i = 0; i < markers; ++i) {
    void* p = malloc(77777);
    if (p != nullptr) memset(p, 3, 64);
    kept->push_back(p);
  }
  int state = PTHREAD_CANCEL_DISABLE;
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &state);
  g_cancellable = state == PTHREAD_CANCEL_ENABLE;
}

// SIGPROF to this thread every 200 us of its CPU time.
bool StartTimer(timer_t* timer) {
  sigevent ev{};
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = SIGPROF;
  ev._sigev_un._tid = static_cast<pid_t>(syscall(SYS_gettid));
  if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, timer) != 0) return false;
  itimerspec every{{0, 200000}, {0, 200000}};
  timer_settime(*timer, 0, &every, nullptr);
  return true;
}

// Without the shim there is no profiler's code to jump out of.
void JumpOut(int jumps) {
  timer_t timer;
  if (!StartTimer(&timer)) return;
  time_t deadline = time(nullptr) + 30;
  if (g_builtin) {
    if (__builtin_setjmp(g_builtin_jump)) {
      // No sigreturn: the handler's signal is still blocked.
      sigset_t prof;
      sigemptyset(&prof);
      sigaddset(&prof, SIGPROF);
      pthread_sigmask(SIG_UNBLOCK, &prof, nullptr);
    }
  } else {
    sigsetjmp(g_jump, 1);
  }
  if (g_jumps.fetch_add(1) < jumps && time(nullptr) < deadline) {
    g_armed = 1;
    Churn(deadline);
  }
  g_armed = 0;
  timer_delete(timer);
}

// HOW=exit: allocates until the handler ends this thread (pthread_exit:
// its result is nullptr) or 30 s pass.
timer_t g_exit_timer;
void* ChurnUntilEnded(void*) {
  if (!StartTimer(&g_exit_timer)) return &g_exit_timer;
  g_armed = 1;
  Churn(time(nullptr) + 30);
  g_armed = 0;
  return &g_exit_timer;
}

int EndThreads(int threads) {
  if (g_range_count == 0) return threads;
  int ended = 0;
  for (int i = 0; i < threads; ++i) {
    pthread_t thread;
    void* result = &g_exit_timer;
    if (pthread_create(&thread, nullptr, ChurnUntilEnded, nullptr) != 0) break;
    pthread_join(thread, &result);
    timer_delete(g_exit_timer);
    if (result != nullptr) break;
    ++ended;
  }
  return ended;
}

void Jumper(int jumps, int markers, std::vector<void*>* kept) {
  if (g_range_count > 0) JumpOut(jumps);
  g_jumped_enough.store(true);
  while (!g_forked.load()) usleep(1000);  // waits, allocating nothing
  AllocateMarkers(kept, markers);
}

__attribute__((noinline)) int ChildWork() { return AllocateAndFree(200, 4096); }

}  // namespace

int main(int argc, char** argv) {
  int jumps = argc > 1 ? atoi(argv[1]) : 20;
  int forks = argc > 2 ? atoi(argv[2]) : 5;
  int markers = argc > 3 ? atoi(argv[3]) : 50;
  const char* where_arg = argc > 4 ? argv[4] : "all";
  int settle_ms = argc > 5 ? atoi(argv[5]) : 0;
  g_exit = argc > 6 && strcmp(argv[6], "exit") == 0;
  g_builtin = argc > 6 && strcmp(argv[6], "builtin") == 0;
  Where where{true, true, 0, 0};
  if (strcmp(where_arg, "unwind") == 0) {
    where.shim = false;
  } else if (strcmp(where_arg, "all") != 0) {
    char* end = nullptr;
    where = {true, false, strtoul(where_arg, &end, 16), 0};
    if (end == nullptr || *end != '-') return 2;
    where.end = strtoul(end + 1, nullptr, 16);
    if (where.end <= where.start) return 2;
  }
  if (jumps < 0 || forks < 0 || markers < 0 || settle_ms < 0) return 2;
  if (where.unwind) AwaitLibunwind();
  dl_iterate_phdr(FindProfilerCode, &where);
  // Under the shim, code to jump out of must be there (else the run would
  // pass as one without the shim does).
  if (g_range_count == 0 && Loaded("libheapwatch")) return 4;
  struct sigaction sa {};
  sa.sa_sigaction = OnTimer;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPROF, &sa, nullptr);
  std::vector<void*> kept;
  kept.reserve(static_cast<size_t>(markers));
  std::thread jumper;
  int jumped = 0;
  if (g_exit) {
    jumped = EndThreads(jumps);
  } else {
    jumper = std::thread(Jumper, jumps, markers, &kept);
    while (!g_jumped_enough.load()) usleep(1000);
    // Without the shim nothing is the profiler's: no jumps, as many as asked.
    jumped = g_range_count == 0 ? jumps : g_jumps.load() - 1;
    if (jumped > jumps) jumped = jumps;
  }
  int hung = 0, failed = 0, done = 0;
  for (; done < forks; ++done) {
    ChildOutcome r = ForkAndWait(ChildWork);
    if (r == kChildHung) ++hung;
    if (r == kChildFailed) ++failed;
    if (r != kChildDone) break;
  }
  g_forked.store(true);
  if (g_exit) {
    AllocateMarkers(&kept, markers);
  } else {
    jumper.join();
  }
  printf("jumps=%d forks=%d hung=%d failed=%d cancellable=%d\n", jumped, done, hung, failed,
         g_cancellable ? 1 : 0);
  fflush(stdout);
  usleep(static_cast<useconds_t>(settle_ms) * 1000);
  if (jumped < jumps) return 3;
  return hung || failed ? 1 : 0;
}
