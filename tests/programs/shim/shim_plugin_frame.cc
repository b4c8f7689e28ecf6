// Two plugins for shim_dlopen whose hw_plugin_alloc calls malloc from the
// same offset, built twice from this file: libshim_plugin_fpframe.so keeps a
// frame pointer (its caller's frame is found from rbp), in
// libshim_plugin_spframe.so the frame is found from rsp and rbp holds 0
// across the call. The pc of the return into either is the same number when
// one is loaded where the other was; an unwinder that took the first one's
// rule for the second's frame read memory near address 0
// (tests/e2e/test_shim_modules.py, StaleTraceCacheTest). Assembly, so that
// the offsets and frames are exactly these (x86-64).
#if defined(SHIM_PLUGIN_FRAME_POINTER)
asm(R"(
        .pushsection .text
        .globl hw_plugin_alloc
        .type hw_plugin_alloc, @function
        .p2align 12
hw_plugin_alloc:
        .cfi_startproc
        push %rbp
        .cfi_def_cfa_offset 16
        .cfi_offset %rbp, -16
        mov %rsp, %rbp
        .cfi_def_cfa_register %rbp
        call malloc@PLT
        pop %rbp
        .cfi_def_cfa %rsp, 8
        ret
        .cfi_endproc
        .size hw_plugin_alloc, .-hw_plugin_alloc
        .popsection
)");
#else
asm(R"(
        .pushsection .text
        .globl hw_plugin_alloc
        .type hw_plugin_alloc, @function
        .p2align 12
hw_plugin_alloc:
        .cfi_startproc
        push %rbp
        .cfi_def_cfa_offset 16
        .cfi_offset %rbp, -16
        xor %ebp, %ebp
        nop
        call malloc@PLT
        pop %rbp
        .cfi_def_cfa_offset 8
        ret
        .cfi_endproc
        .size hw_plugin_alloc, .-hw_plugin_alloc
        .popsection
)");
#endif
