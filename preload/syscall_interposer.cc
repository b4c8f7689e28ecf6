// syscall and prctl, interposed for what programs make through them that
// the shim must see:
//  - the calls that install a seccomp filter (or strict mode):
//    prctl(PR_SET_SECCOMP), and seccomp(2), which glibc does not wrap, so
//    programs (libseccomp's seccomp_load among them) make it with
//    syscall(SYS_seccomp); syscall(SYS_prctl, PR_SET_SECCOMP) too. A
//    program that sandboxes itself (sshd's privsep child, minijail, a
//    browser's renderer) may refuse the shim's system calls, or end the
//    process for them: under the shim, a filter that kills on socket()
//    killed its installer's forked children at their first sample, when the
//    sender connected (tests/programs/shim/shim_seccomp.cc). So before the
//    call the shim goes off for good (recorder.h, StopForSeccomp);
//  - syscall(SYS_unshare) and syscall(SYS_setns), which go to the shim's
//    unshare and setns (namespace_interposer.cc: they need the process to
//    have one thread, and the sender is a second);
//  - syscall(SYS_chroot), syscall(SYS_pivot_root) and
//    syscall(SYS_landlock_restrict_self) (glibc wraps neither of the last
//    two), before which libunwind is loaded, as before chroot()
//    (recorder.h, LoadUnwinderBeforeLeavingFiles): after them its files may
//    be out of reach.
// Every call then goes on to the next definition (glibc's, or another
// preloaded library's), looked up in the shim's constructor: the shim's own
// calls come here too (-Bsymbolic-functions), some of them inside malloc,
// where a lookup may not be made. Until then syscall() makes the call
// itself, with glibc's instructions and errno (raw_syscall.h).
//
// syscall() is written in assembly: a C++ function would use the stack after
// the call, and a clone() made through syscall() continues on the child's
// new stack right there; so each path leaves the stack as it found it
// before it jumps on.
#include <linux/seccomp.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libc_functions.h"
#include "raw_syscall.h"
#include "recorder.h"

#define HW_EXPORT extern "C" __attribute__((visibility("default")))

// Before a call syscall() below (or prctl) singles out: one that installs
// a seccomp filter (`op` its mode, or prctl's option), or one that changes
// the process's root.
extern "C" __attribute__((visibility("hidden"), used)) void HeapwatchBeforeSyscall(long number, long op) {
  if (number == SYS_chroot || number == SYS_pivot_root || number == SYS_landlock_restrict_self) {
    heapwatch::preload::LoadUnwinderBeforeLeavingFiles();
    return;
  }
  heapwatch::preload::StopForSeccomp(number == SYS_prctl ? "prctl(PR_SET_SECCOMP)"
                                     : op == SECCOMP_SET_MODE_STRICT ? "seccomp(SECCOMP_SET_MODE_STRICT)"
                                                                     : "seccomp(SECCOMP_SET_MODE_FILTER)");
}

// namespace_interposer.cc: unshare(flags) and setns(fd, nstype), for
// syscall(SYS_unshare) and syscall(SYS_setns), with syscall()'s result type.
extern "C" long HeapwatchSyscallUnshare(long flags) __attribute__((visibility("hidden")));
extern "C" long HeapwatchSyscallSetns(long fd, long nstype) __attribute__((visibility("hidden")));

static_assert(SYS_seccomp == 317 && SYS_prctl == 157 && PR_SET_SECCOMP == 22 &&
                  SECCOMP_SET_MODE_STRICT == 0 && SECCOMP_SET_MODE_FILTER == 1 && SYS_unshare == 272 &&
                  SYS_setns == 308 && SYS_chroot == 161 && SYS_pivot_root == 155 &&
                  SYS_landlock_restrict_self == 446,
              "the numbers in syscall() below");

// Where syscall() goes on to: glibc's (or the next preloaded definition) once
// the constructor found it.
extern "C" {
__attribute__((visibility("hidden"), used)) void* heapwatch_next_syscall =
    reinterpret_cast<void*>(&heapwatch_raw_syscall);
}

#if defined(__x86_64__)
// long syscall(long number, ...): number in rdi, the arguments in rsi, rdx,
// rcx, r8, r9 and 8(%rsp), as glibc's takes them.
asm(R"(
  .text
  .globl syscall
  .type syscall, @function
  .p2align 4
syscall:
  .cfi_startproc
  cmpq $317, %rdi
  je 2f
  cmpq $157, %rdi
  je 3f
  cmpq $272, %rdi
  je 6f
  cmpq $308, %rdi
  je 7f
  cmpq $161, %rdi
  je 4f
  cmpq $155, %rdi
  je 4f
  cmpq $446, %rdi
  je 4f
1:
  jmpq *heapwatch_next_syscall(%rip)
6:
  movq %rsi, %rdi
  jmp HeapwatchSyscallUnshare
7:
  movq %rsi, %rdi
  movq %rdx, %rsi
  jmp HeapwatchSyscallSetns
2:
  cmpq $1, %rsi
  ja 1b
  jmp 4f
3:
  cmpq $22, %rsi
  jne 1b
4:
  pushq %rdi
  .cfi_adjust_cfa_offset 8
  pushq %rsi
  .cfi_adjust_cfa_offset 8
  pushq %rdx
  .cfi_adjust_cfa_offset 8
  pushq %rcx
  .cfi_adjust_cfa_offset 8
  pushq %r8
  .cfi_adjust_cfa_offset 8
  pushq %r9
  .cfi_adjust_cfa_offset 8
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  call HeapwatchBeforeSyscall
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  popq %r9
  .cfi_adjust_cfa_offset -8
  popq %r8
  .cfi_adjust_cfa_offset -8
  popq %rcx
  .cfi_adjust_cfa_offset -8
  popq %rdx
  .cfi_adjust_cfa_offset -8
  popq %rsi
  .cfi_adjust_cfa_offset -8
  popq %rdi
  .cfi_adjust_cfa_offset -8
  jmp 1b
  .cfi_endproc
  .size syscall, .-syscall

  .globl heapwatch_raw_syscall
  .hidden heapwatch_raw_syscall
  .type heapwatch_raw_syscall, @function
  .p2align 4
heapwatch_raw_syscall:
  .cfi_startproc
  movq %rdi, %rax
  movq %rsi, %rdi
  movq %rdx, %rsi
  movq %rcx, %rdx
  movq %r8, %r10
  movq %r9, %r8
  movq 8(%rsp), %r9
  syscall
  cmpq $-4095, %rax
  jae 1f
  ret
1:
  negq %rax
  pushq %rax
  .cfi_adjust_cfa_offset 8
  call __errno_location@PLT
  popq %rcx
  .cfi_adjust_cfa_offset -8
  movl %ecx, (%rax)
  movq $-1, %rax
  ret
  .cfi_endproc
  .size heapwatch_raw_syscall, .-heapwatch_raw_syscall
)");
#endif

namespace {

PrctlFn g_next_prctl = nullptr;

// From the start's walk over the loaded objects, as dlsym(RTLD_NEXT) would
// find them (libc_functions.h): a dlsym is ~1,300 instructions of every exec.
__attribute__((constructor)) void FindNextDefinitions() {
  const auto& next = heapwatch::preload::Libc().after_shim;
  if (next.syscall) {
    __atomic_store_n(&heapwatch_next_syscall, reinterpret_cast<void*>(next.syscall), __ATOMIC_RELEASE);
  }
  __atomic_store_n(&g_next_prctl, next.prctl, __ATOMIC_RELEASE);
}

}  // namespace

HW_EXPORT int prctl(int option, ...) {
  va_list ap;
  va_start(ap, option);
  unsigned long args[4];
  for (unsigned long& a : args) a = va_arg(ap, unsigned long);
  va_end(ap);
  PrctlFn next = __atomic_load_n(&g_next_prctl, __ATOMIC_ACQUIRE);
  if (!next) return static_cast<int>(syscall(SYS_prctl, option, args[0], args[1], args[2], args[3]));
  if (option == PR_SET_SECCOMP) HeapwatchBeforeSyscall(SYS_prctl, static_cast<long>(args[0]));
  return next(option, args[0], args[1], args[2], args[3]);
}
