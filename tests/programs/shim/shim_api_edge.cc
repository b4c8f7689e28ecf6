// Exercises every corner of the allocation API and prints what it observes,
// never an address, so the output must be byte-identical with and without the
// shim (and is compared so by test_shim_api.py). With SHIM_MARKERS=1 it also
// makes one allocation per API entry point with a recognisable size
// (kMarkerBase + k) and frees it, for tests that watch the wire.
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr size_t kMarkerBase = 1000000;  // marker k has size kMarkerBase + k
void* g_before_main = nullptr;

__attribute__((constructor)) void BeforeMain() {
  g_before_main = malloc(333);
  memset(g_before_main, 1, 333);
}

struct AtExitAllocator {
  ~AtExitAllocator() {
    // Allocation during exit (static destructors): must keep working.
    std::string* s = new std::string(1000, 'x');
    char* p = static_cast<char*>(malloc(5000));
    memset(p, 0, 5000);
    printf("static destructor ok %zu\n", s->size());
    fflush(stdout);
    free(p);
    delete s;
  }
} g_at_exit;

void AtExitHandler() {
  void* p = calloc(10, 100);
  printf("atexit ok %d\n", p != nullptr);
  free(p);
}

int g_failures = 0;
void Check(bool ok, const char* what) {
  printf("%s: %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++g_failures;
}

bool Aligned(void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

bool AllEqual(const void* p, size_t n, unsigned char c) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != c) return false;
  }
  return true;
}

void MallocAndFree() {
  void* p0 = malloc(0);
  Check(p0 != nullptr, "malloc(0) returns a unique pointer");
  free(p0);
  free(nullptr);
  Check(true, "free(NULL)");
  char* p = static_cast<char*>(malloc(100));
  memset(p, 7, 100);
  Check(malloc_usable_size(p) >= 100, "malloc_usable_size >= requested");
  free(p);
  errno = 0;
  void* huge = malloc(SIZE_MAX - 4096);
  Check(huge == nullptr && errno == ENOMEM, "malloc(huge) fails with ENOMEM");
}

void Calloc() {
  // Dirty some memory first so a non-zeroing calloc would show.
  for (int i = 0; i < 10; ++i) {
    void* d = malloc(1 << 16);
    memset(d, 0xab, 1 << 16);
    free(d);
  }
  void* p = calloc(1 << 10, 64);
  Check(p && AllEqual(p, 1 << 16, 0), "calloc zeroes");
  free(p);
  errno = 0;
  void* o = calloc(SIZE_MAX / 2, 4);
  Check(o == nullptr && errno == ENOMEM, "calloc overflow fails with ENOMEM");
  void* z = calloc(0, 10);
  Check(z != nullptr, "calloc(0, n) returns a pointer");
  free(z);
}

void Realloc() {
  char* p = static_cast<char*>(realloc(nullptr, 100));
  Check(p != nullptr, "realloc(NULL, n) allocates");
  memset(p, 'a', 100);
  p = static_cast<char*>(realloc(p, 50));
  Check(p && AllEqual(p, 50, 'a'), "realloc shrink keeps contents");
  p = static_cast<char*>(realloc(p, 1 << 20));
  Check(p && AllEqual(p, 50, 'a'), "realloc grow (move) keeps contents");
  memset(p, 'b', 1 << 20);
  errno = 0;
  char* q = static_cast<char*>(realloc(p, SIZE_MAX - 4096));
  Check(q == nullptr && errno == ENOMEM && AllEqual(p, 1 << 20, 'b'),
        "failed realloc leaves the block intact");
  p = static_cast<char*>(realloc(p, 10));
  Check(p && AllEqual(p, 10, 'b'), "realloc after failure");
  void* r = realloc(p, 0);
  printf("realloc(p, 0) returns %s\n", r ? "a pointer" : "NULL");
  free(r);
}

void ReallocArray() {
  errno = 0;
  void* p = reallocarray(nullptr, SIZE_MAX / 2, 3);
  Check(p == nullptr && errno == ENOMEM, "reallocarray overflow fails with ENOMEM");
  int* a = static_cast<int*>(reallocarray(nullptr, 10, sizeof(int)));
  for (int i = 0; i < 10; ++i) a[i] = i;
  a = static_cast<int*>(reallocarray(a, 1000, sizeof(int)));
  bool ok = a != nullptr;
  for (int i = 0; ok && i < 10; ++i) ok = a[i] == i;
  Check(ok, "reallocarray grows and keeps contents");
  free(a);
}

void AlignedFamily() {
  void* p = nullptr;
  Check(posix_memalign(&p, 64, 1000) == 0 && Aligned(p, 64), "posix_memalign 64");
  free(p);
  Check(posix_memalign(&p, 4096, 10) == 0 && Aligned(p, 4096), "posix_memalign 4096");
  free(p);
  Check(posix_memalign(&p, 3, 10) == EINVAL, "posix_memalign bad alignment is EINVAL");
  void* a = aligned_alloc(128, 256);
  Check(a && Aligned(a, 128), "aligned_alloc 128");
  free(a);
  void* m = memalign(256, 1000);
  Check(m && Aligned(m, 256), "memalign 256");
  free(m);
  long page = sysconf(_SC_PAGESIZE);
  void* v = valloc(100);
  Check(v && Aligned(v, page), "valloc is page aligned");
  free(v);
  // jemalloc has no pvalloc: glibc's would hand out a block jemalloc cannot
  // free, so the baseline run over jemalloc skips it.
  if (getenv("SHIM_SKIP_PVALLOC")) {
    printf("pvalloc skipped\n");
    return;
  }
  void* pv = pvalloc(100);
  Check(pv && Aligned(pv, page) && malloc_usable_size(pv) >= size_t(page),
        "pvalloc is page aligned and page sized");
  free(pv);
}

struct alignas(256) Overaligned {
  char bytes[300];
};

void Cxx() {
  auto* s = new std::string(200, 'q');
  delete s;
  int* arr = new int[1000]();
  Check(arr[999] == 0, "new[] value-initialises");
  delete[] arr;
  auto* o = new Overaligned;
  Check(Aligned(o, 256), "aligned new");
  delete o;
  auto* oa = new Overaligned[3];
  Check(Aligned(oa, 256), "aligned new[]");
  delete[] oa;
  void* nt = operator new(SIZE_MAX / 2, std::nothrow);
  Check(nt == nullptr, "nothrow new of a huge size returns null");
  bool caught = false;
  try {
    void* t = operator new(SIZE_MAX / 2);
    operator delete(t);
  } catch (const std::bad_alloc&) {
    caught = true;
  }
  Check(caught, "new of a huge size throws bad_alloc");
  // The new-handler runs before bad_alloc (the shim leaves failures to the
  // next operator new): this one uninstalls itself, so the second try throws.
  static int handler_calls = 0;
  std::set_new_handler([] {
    ++handler_calls;
    std::set_new_handler(nullptr);
  });
  caught = false;
  try {
    void* t = operator new[](SIZE_MAX / 2);
    operator delete[](t);
  } catch (const std::bad_alloc&) {
    caught = true;
  }
  Check(caught && handler_calls == 1, "new[] runs the new-handler once, then throws bad_alloc");
  int depth = 0;
  try {
    std::vector<std::string> v(10, "abc");
    ++depth;
    throw std::runtime_error("through the shim's frames");
  } catch (const std::exception& e) {
    Check(depth == 1 && strcmp(e.what(), "through the shim's frames") == 0,
          "exceptions propagate");
  }
  std::vector<std::vector<int>> nested;
  for (int i = 0; i < 1000; ++i) nested.emplace_back(i, i);
  size_t sum = 0;
  for (auto& n : nested) sum += n.size();
  printf("nested vectors %zu\n", sum);
}

std::atomic<int> g_signals{0};
void OnSignal(int) {
  // malloc in a signal handler is not async-signal-safe in general, but
  // programs do it; the shim must not add a deadlock (it takes no locks).
  void* p = malloc(64 + (g_signals.load() % 100) * 1000);
  free(p);
  g_signals.fetch_add(1);
}

void SignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGUSR1, &sa, nullptr);
  pthread_t self = pthread_self();
  std::atomic<bool> done{false}, sent_all{false};
  pthread_t sender;
  struct Args {
    pthread_t target;
    std::atomic<bool>* done;
    std::atomic<bool>* sent_all;
  } args{self, &done, &sent_all};
  pthread_create(
      &sender, nullptr,
      [](void* a) -> void* {
        auto* args = static_cast<Args*>(a);
        for (int i = 0; i < 2000 && !args->done->load(); ++i) {
          pthread_kill(args->target, SIGUSR1);
          usleep(50);
        }
        args->sent_all->store(true);
        return nullptr;
      },
      &args);
  // Allocate until 50 signals have landed (or the sender gave up).
  for (int i = 0; g_signals.load() < 50 && !sent_all.load(); ++i) {
    void* p = malloc(16 + (i % 4096));
    free(p);
  }
  done = true;
  pthread_join(sender, nullptr);
  Check(g_signals.load() > 0, "malloc in signal handlers");
}

void Threads() {
  std::vector<pthread_t> threads(16);
  for (auto& t : threads) {
    pthread_create(
        &t, nullptr,
        [](void*) -> void* {
          std::vector<void*> v;
          for (int i = 0; i < 2000; ++i) v.push_back(malloc(1 + i * 37 % 20000));
          for (void* p : v) free(p);
          return malloc(100);  // freed by the joiner: cross-thread free
        },
        nullptr);
  }
  int joined = 0;
  for (auto& t : threads) {
    void* r = nullptr;
    pthread_join(t, &r);
    free(r);
    ++joined;
  }
  printf("threads joined %d\n", joined);
}

void Fork() {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    void* p = malloc(1 << 20);
    memset(p, 1, 1 << 20);
    free(g_before_main);  // inherited from the parent
    free(p);
    _exit(7);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  printf("fork child exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

void* g_kept = nullptr;
void Escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

// A frame of its own (not inlined into main): stacks of the markers hold two
// of the program's frames, which the unwinders must agree on.
__attribute__((noinline)) void Markers() {
  // One allocation per entry point, each with its own size.
  // malloc's address, taken in the code: the non-PIE build of this program
  // (shim_api_edge_nopie) then makes its own PLT entry the address that
  // every object sees as malloc's (Debian's python3 does the same); its
  // calls still reach the shim.
  Escape(reinterpret_cast<void*>(&malloc));
  std::vector<void*> c_blocks;
  c_blocks.push_back(malloc(kMarkerBase + 0));
  c_blocks.push_back(calloc(1, kMarkerBase + 1));
  c_blocks.push_back(realloc(malloc(10), kMarkerBase + 2));
  c_blocks.push_back(reallocarray(nullptr, 1, kMarkerBase + 3));
  void* p = nullptr;
  if (posix_memalign(&p, 64, kMarkerBase + 4) == 0) c_blocks.push_back(p);
  c_blocks.push_back(aligned_alloc(64, kMarkerBase + 64));  // multiple of the alignment
  c_blocks.push_back(memalign(64, kMarkerBase + 6));
  c_blocks.push_back(valloc(kMarkerBase + 7));
  if (!getenv("SHIM_SKIP_PVALLOC")) c_blocks.push_back(pvalloc(kMarkerBase + 8));
  for (void* b : c_blocks) free(b);
  char* arr = new char[kMarkerBase + 9];
  Escape(arr);  // or the compiler may elide the new/delete pair
  delete[] arr;
  operator delete(operator new(kMarkerBase + 10));
  operator delete(operator new(kMarkerBase + 11, std::nothrow));
  // libstdc++ rounds an aligned new up to a multiple of the alignment before
  // calling aligned_alloc: pick a size that already is one.
  operator delete(operator new(kMarkerBase + 192, std::align_val_t(128)), std::align_val_t(128));
  operator delete(operator new(kMarkerBase + 13), kMarkerBase + 13);  // sized delete
  // A block that stays live until exit (the stream's live set must have it).
  g_kept = malloc(kMarkerBase + 14);
  Escape(g_kept);
}

}  // namespace

int main() {
  atexit(AtExitHandler);
  Check(g_before_main && AllEqual(g_before_main, 333, 1), "malloc before main");
  MallocAndFree();
  Calloc();
  Realloc();
  ReallocArray();
  AlignedFamily();
  Cxx();
  SignalHandlers();
  Threads();
  Fork();
  if (getenv("SHIM_MARKERS")) Markers();
  printf("failures %d\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
