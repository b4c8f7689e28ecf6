// Multi-threaded allocation stress that forks mid-run. Every block is filled
// with a pattern derived from its slot and checked before it is freed, so heap
// corruption shows as a failure; the printed checksums depend only on the
// seeds, never on addresses, so the output must be identical with and without
// the shim.
//
//   shim_stress THREADS ITERATIONS
// The main thread forks when the workers are half done; the child runs a
// smaller workload of its own (2 threads) and exits; the parent reports the
// child's exit status. Exit status 0 = no corruption anywhere.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kSlots = 512;

struct Block {
  unsigned char* p = nullptr;
  size_t size = 0;
  unsigned char tag = 0;
  bool cxx = false;
};

uint64_t Next(uint64_t* x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

bool Verify(const Block& b) {
  for (size_t i = 0; i < b.size; i += 61) {
    if (b.p[i] != static_cast<unsigned char>(b.tag + i)) return false;
  }
  return true;
}

void Fill(Block* b) {
  for (size_t i = 0; i < b->size; i += 61) b->p[i] = static_cast<unsigned char>(b->tag + i);
}

void Release(Block* b) {
  if (!b->p) return;
  if (b->cxx) {
    delete[] b->p;
  } else {
    free(b->p);
  }
  b->p = nullptr;
}

// Returns a checksum of everything verified, or UINT64_MAX on corruption.
uint64_t Work(uint64_t seed, int iterations, std::atomic<int>* progress) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  std::vector<Block> slots(kSlots);
  uint64_t sum = 0;
  for (int i = 0; i < iterations; ++i) {
    uint64_t r = Next(&x);
    Block& b = slots[r % kSlots];
    if (b.p) {
      if (!Verify(b)) return UINT64_MAX;
      sum += b.size * b.tag;
    }
    size_t size = 1 + (Next(&x) % ((r >> 20) % 16 == 0 ? 262144 : 2048));
    unsigned char tag = static_cast<unsigned char>(r >> 40);
    switch ((r >> 8) % 5) {
      case 0:
        Release(&b);
        b.p = static_cast<unsigned char*>(malloc(size));
        b.cxx = false;
        break;
      case 1:
        Release(&b);
        b.p = static_cast<unsigned char*>(calloc(1, size));
        b.cxx = false;
        break;
      case 2:
        if (b.p && !b.cxx) {
          b.p = static_cast<unsigned char*>(realloc(b.p, size));
        } else {
          Release(&b);
          b.p = static_cast<unsigned char*>(realloc(nullptr, size));
        }
        b.cxx = false;
        break;
      case 3:
        Release(&b);
        b.p = new unsigned char[size];
        b.cxx = true;
        break;
      default: {
        Release(&b);
        void* p = nullptr;
        if (posix_memalign(&p, 64, size) != 0) return UINT64_MAX;
        b.p = static_cast<unsigned char*>(p);
        b.cxx = false;
      }
    }
    if (!b.p) return UINT64_MAX;
    b.size = size;
    b.tag = tag;
    Fill(&b);
    if (progress && i == iterations / 2) progress->fetch_add(1);
  }
  for (Block& b : slots) {
    if (b.p && !Verify(b)) return UINT64_MAX;
    Release(&b);
  }
  return sum;
}

// Prints once `forked` is set (if given): the forking thread flushes stdout
// before it forks, so lines printed earlier would come out ahead of the
// child's, which a loaded machine's scheduler made happen now and then.
int RunThreads(int threads, int iterations, uint64_t seed_base, std::atomic<int>* progress,
               const char* who, const std::atomic<bool>* forked = nullptr) {
  std::vector<uint64_t> sums(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { sums[t] = Work(seed_base + t, iterations, progress); });
  }
  for (auto& th : pool) th.join();
  while (forked && !forked->load()) std::this_thread::yield();
  int bad = 0;
  for (int t = 0; t < threads; ++t) {
    if (sums[t] == UINT64_MAX) ++bad;
    printf("%s thread %d checksum %llu\n", who, t, static_cast<unsigned long long>(sums[t]));
  }
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 4;
  int iterations = argc > 2 ? atoi(argv[2]) : 200000;
  std::atomic<int> progress{0};
  int child_status = -1;
  std::atomic<bool> forked{false};
  std::thread forker([&] {
    while (progress.load() < threads) std::this_thread::yield();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      // The child: other threads are gone; its heap is a copy. Work on.
      int bad = RunThreads(2, iterations / 4, 1000, nullptr, "child");
      // exit, not _exit: the child's shim flushes its stream at exit (its
      // own sender, started at fork), which the fork test checks.
      exit(bad == 0 ? 0 : 3);
    }
    forked.store(true);
    int status = 0;
    waitpid(pid, &status, 0);
    child_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  });
  int bad = RunThreads(threads, iterations, 1, &progress, "parent", &forked);
  forker.join();
  printf("child status %d\n", child_status);
  return bad == 0 && child_status == 0 ? 0 : 1;
}
