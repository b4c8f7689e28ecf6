// A parent that holds one block, forks, and a child that holds another, so
// the collector must see two processes with their own heaps.
//
//   collector_fork PARENT_BYTES CHILD_BYTES
//
// Prints "parent <pid>" and "child <pid>" once each holds its block, then each
// waits: the child exits when stdin gets a line ("c"), the parent exits after
// that when it gets a second line ("p").
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// volatile sinks keep the blocks live and the writes real.
void* volatile g_parent_block;
void* volatile g_child_block;

__attribute__((noinline)) void ParentHoldsBlock(size_t bytes) {
  g_parent_block = std::malloc(bytes);
  std::memset(g_parent_block, 1, bytes);
}

__attribute__((noinline)) void ChildHoldsBlock(size_t bytes) {
  g_child_block = std::malloc(bytes);
  std::memset(g_child_block, 2, bytes);
}

void WaitLine() {
  char line[16];
  if (!std::fgets(line, sizeof(line), stdin)) std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: collector_fork PARENT_BYTES CHILD_BYTES\n");
    return 2;
  }
  size_t parent_bytes = std::strtoull(argv[1], nullptr, 10);
  size_t child_bytes = std::strtoull(argv[2], nullptr, 10);
  setvbuf(stdout, nullptr, _IONBF, 0);
  ParentHoldsBlock(parent_bytes);
  std::printf("parent %d\n", getpid());
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    ChildHoldsBlock(child_bytes);
    std::printf("child %d\n", getpid());
    WaitLine();
    _exit(0);  // no atexit work in the child
  }
  int status = 0;
  waitpid(child, &status, 0);
  WaitLine();
  std::free(g_parent_block);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
