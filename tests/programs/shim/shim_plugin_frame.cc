// Two plugins for shim_dlopen whose hw_plugin_alloc calls malloc from the
// same offset, built twice from this file: libshim_plugin_fpframe.so keeps a
// frame pointer (its caller's frame is found from rbp), in
// libshim_plugin_spframe.so the frame is found from rsp and rbp holds 0
// across the call. The pc of the return into either is the same number when
// one is loaded where the other was; an unwinder that took the first one's
// rule for the second's frame read memory near address 0
// (tests/e2e/test_shim_modules.py, StaleTraceCacheTest). Assembly, so that
// the offsets and frames are exactly these (x86-64).
// hw_plugin_alloc's frame: push rbp, then SETUP (4 bytes: the call lies at
// offset 4 in both), call malloc, pop rbp with AFTER_POP's CFI, return.
#define HW_PLUGIN_ALLOC(SETUP, AFTER_POP)            \
  asm(".pushsection .text\n"                         \
      ".globl hw_plugin_alloc\n"                     \
      ".type hw_plugin_alloc, @function\n"           \
      ".p2align 12\n"                                \
      "hw_plugin_alloc:\n"                           \
      ".cfi_startproc\n"                             \
      "push %rbp\n"                                  \
      ".cfi_def_cfa_offset 16\n"                     \
      ".cfi_offset %rbp, -16\n" SETUP                \
      "call malloc@PLT\n"                            \
      "pop %rbp\n" AFTER_POP                         \
      "ret\n"                                        \
      ".cfi_endproc\n"                               \
      ".size hw_plugin_alloc, .-hw_plugin_alloc\n"   \
      ".popsection\n")

#if defined(SHIM_PLUGIN_FRAME_POINTER)
HW_PLUGIN_ALLOC("mov %rsp, %rbp\n.cfi_def_cfa_register %rbp\n", ".cfi_def_cfa %rsp, 8\n");
#else
HW_PLUGIN_ALLOC("xor %ebp, %ebp\nnop\n", ".cfi_def_cfa_offset 8\n");
#endif
