// Threads that allocate in one function at the same time, for the shim's two
// ways of unwinding (preload/unwinder.h; tests/e2e/test_shim_threads.py).
//   shim_threads [THREADS=6] [BLOCKS=64] [BYTES=4096]
// Each thread allocates BLOCKS blocks of BYTES in shim_threads::Hoard, called
// from shim_threads::WorkerMain, and stays alive, so that all of them sample
// while all are alive (bench/shim/run_threads.sh reads the RSS then). The
// blocks are kept. Once every thread is done the program says "ready", waits
// for a line on stdin, ends the threads, frees everything and exits 0.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace shim_threads {

std::atomic<int> g_done{0};
std::atomic<bool> g_quit{false};

__attribute__((noinline)) void* Hoard(size_t bytes) {
  void* block = malloc(bytes);
  if (block != nullptr) memset(block, 0x5a, bytes < 64 ? bytes : 64);
  asm volatile("" ::: "memory");  // a real call, a real frame
  return block;
}

__attribute__((noinline)) void WorkerMain(int blocks, size_t bytes, std::vector<void*>* kept) {
  for (int i = 0; i < blocks; ++i) kept->push_back(Hoard(bytes));
  g_done.fetch_add(1);
  while (!g_quit.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  asm volatile("" ::: "memory");
}

}  // namespace shim_threads

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 6;
  int blocks = argc > 2 ? atoi(argv[2]) : 64;
  size_t bytes = argc > 3 ? strtoul(argv[3], nullptr, 10) : 4096;
  std::vector<std::vector<void*>> kept(threads);
  for (auto& k : kept) k.reserve(blocks);  // only Hoard's blocks are allocated in the threads' loops
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back(shim_threads::WorkerMain, blocks, bytes, &kept[t]);
  }
  while (shim_threads::g_done.load() < threads) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  printf("ready\n");
  fflush(stdout);
  char line[16];
  bool got = fgets(line, sizeof(line), stdin) != nullptr;
  shim_threads::g_quit.store(true);
  for (auto& th : pool) th.join();
  if (!got) return 1;
  for (auto& k : kept) {
    for (void* p : k) free(p);
  }
  return 0;
}
