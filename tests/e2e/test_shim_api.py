"""The shim under the API edge-case program and python3: same behaviour as
without the shim, and the right records on the wire (WireReceiver)."""
import bisect
import os
import re
import resource
import shutil
import subprocess
import tempfile
import textwrap
import unittest

from test_shim_support import (JEMALLOC, KEPT, MARKERS, SHIM, TCMALLOC, ShimSocketTest,
                               WireReceiver, program, real_python, run, shim_env, wait_until)


class ShimApiTest(ShimSocketTest):
    def setUp(self):
        super().setUp()
        self.api = program("shim_api_edge")

    def baseline(self, cmd=None, **env):
        r = run(cmd or [self.api], env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_output_identical_without_a_collector(self):
        want = self.baseline()
        for extra in ({}, {"HEAPWATCH_SAMPLE_BYTES": "1"}, {"HEAPWATCH_SAMPLE_BYTES": "64"},
                      {"HEAPWATCH_UNWIND": "fp", "HEAPWATCH_SAMPLE_BYTES": "1"},
                      {"HEAPWATCH_UNWIND_CACHES": "0", "HEAPWATCH_SAMPLE_BYTES": "1"},
                      {"HEAPWATCH_DISABLE": "1"}):
            with self.subTest(**extra):
                r = run([self.api], shim_env(os.path.join(self.dir, "absent.sock"), **extra),
                        preload=SHIM)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, want)
                self.assertEqual(r.stderr, "", "the shim must not log")

    def test_successful_calls_leave_errno_alone(self):
        # The first sampled malloc of a process used to leave EAGAIN behind
        # (libunwind's first address check reads an empty pipe).
        errno_program = [program("shim_errno"), "500"]
        want = run(errno_program)
        self.assertEqual(want.returncode, 0, want.stdout)
        for preload, extra in ((SHIM, {"HEAPWATCH_SAMPLE_BYTES": "1"}),
                               (SHIM, {"HEAPWATCH_SAMPLE_BYTES": "4096"}),
                               (SHIM, {"HEAPWATCH_SAMPLE_BYTES": "1", "HEAPWATCH_UNWIND_CACHES": "0"}),
                               (SHIM, {"HEAPWATCH_SAMPLE_BYTES": "1", "HEAPWATCH_UNWIND": "fp"}),
                               (f"{SHIM}:{JEMALLOC}", {"HEAPWATCH_SAMPLE_BYTES": "1"}),
                               (f"{SHIM}:{TCMALLOC}", {"HEAPWATCH_SAMPLE_BYTES": "1"})):
            with self.subTest(preload=os.path.basename(preload.split(":")[-1]), **extra):
                r = run(errno_program, shim_env(os.path.join(self.dir, "absent.sock"), **extra),
                        preload=preload)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertEqual(r.stdout, want.stdout)

    def markers(self, **extra):
        """The markers under the shim over glibc's malloc (record_markers)."""
        base = run([self.api], {"SHIM_MARKERS": "1"})
        self.assertEqual(base.returncode, 0, base.stdout + base.stderr)
        return self.record_markers(SHIM, base, **extra)

    def test_every_entry_point_is_recorded_once(self):
        # Each marker recorded once, the kept one live (record_markers).
        main = self.markers()
        self.assertEqual(main.hello["sample_bytes"], 1)
        self.assertEqual(main.hello["max_frames"], 64)
        # Nothing was dropped (a ring of 1 Mi events) and this is the first
        # connection: the ring is replayed from its first event, no resync.
        self.assertEqual(main.resyncs, 0, "first connection replays the ring")

        # Stacks: the shim's own frames are skipped, the caller is the program.
        shim_mods = [m for m in main.modules if m["path"].endswith("libheapwatch.so")]
        exe_mods = [m for m in main.modules if m["path"] == main.exe]
        self.assertEqual(len(shim_mods), 1, [m["path"] for m in main.modules])
        self.assertEqual(len(exe_mods), 1)
        self.assertTrue(all(m["build_id"] for m in main.modules), main.modules)
        self.assertFalse(any(m["path"].startswith("linux-vdso") for m in main.modules))
        kept_stack = next(main.stacks[sid] for s, sid in main.live.values() if s == KEPT)
        exe = exe_mods[0]
        self.assertTrue(exe["start"] <= kept_stack[0] < exe["end"],
                        "innermost frame is the program's call to malloc")
        for pcs in main.stacks.values():
            self.assertFalse(any(shim_mods[0]["start"] <= pc < shim_mods[0]["end"]
                                 for pc in pcs[:1]), "shim frames are skipped")
        self.assertIsNotNone(main.stats)
        self.assertGreater(main.stats["sampled_allocs"], 0)
        self.assertEqual(main.stats["dropped_events"], 0)

    def test_non_pie_executable_that_takes_mallocs_address(self):
        # Such an executable makes its PLT entry the address every object sees
        # as malloc's; its calls still reach the shim. The shim took that
        # entry for another allocator ahead of it and turned itself off
        # (Debian's python3 is such a program).
        name = "shim_api_edge_nopie"
        base = run([program(name)], {"SHIM_MARKERS": "1"})
        self.assertEqual(base.returncode, 0, base.stdout + base.stderr)
        main = self.record_markers(SHIM, base, name=name)
        self.assertGreater(main.stats["sampled_allocs"], 0)

    def test_frame_pointer_stacks_match_libunwinds(self):
        # For every entry point the walk climbs out of the shim and gives the
        # frames libunwind gives.
        self.assertFramePointerStacksMatch(self.markers, MARKERS, min_direct=10)

    def test_disabled_is_a_pure_pass_through(self):
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run([self.api], shim_env(self.sock, HEAPWATCH_DISABLE=1), preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.baseline())
        # The program has exited (and forked a child that exited): had either
        # connected, the receiver would have accepted it by now.
        self.assertEqual(rx.snapshot(), [])

    def test_needs_no_glibc_newer_than_2_17(self):
        # A preload that needs a newer glibc than the application image has
        # stops the application from starting ("version `GLIBC_2.34' not
        # found", exit 1): the shim imports only old functions, finds the
        # rest in the loaded objects at start (libc_functions.h), and loads
        # libunwind, which needs 2.34, with dlopen.
        dump = run(["objdump", "-p", SHIM])
        self.assertEqual(dump.returncode, 0, dump.stderr)
        versions = re.findall(r"\bGLIBC_(\d+)\.(\d+)", dump.stdout.split("Version References:")[1])
        self.assertTrue(versions, dump.stdout)
        newest = max((int(a), int(b)) for a, b in versions)
        self.assertLessEqual(newest, (2, 17), dump.stdout)
        needed = re.findall(r"NEEDED\s+(\S+)", dump.stdout)
        # glibc alone. Not libunwind (loaded with dlopen), nor libm: a
        # program that does not use it (a shell, ls) would load it for the
        # shim alone, ~75 us of every exec (sampler.h). Nor libpthread.so.0
        # and libdl.so.2, where glibc before 2.34 keeps pthread_* and dl*:
        # stubs since, and ~250 us of every exec (dl_functions.h). What the
        # shim calls of theirs it finds in the loaded objects at start, so
        # that an old glibc leaves it null where the program loads neither,
        # instead of stopping the program at its start with "undefined
        # symbol".
        self.assertEqual(needed, ["libc.so.6"])
        symbols = run(["objdump", "-T", SHIM])
        self.assertEqual(symbols.returncode, 0, symbols.stderr)
        undefined = {m.group(2): m.group(1) for m in re.finditer(
            r"^\S+\s+(w?)\s+DF?\s+\*UND\*\s+\S+\s+(?:\(\S+\)|Base)?\s*(\S+)$",
            symbols.stdout, re.M)}
        split = {"dlopen", "dlsym", "dlerror", "pthread_create", "pthread_key_create",
                 "pthread_getspecific", "pthread_setspecific", "pthread_attr_getstack",
                 "pthread_attr_setstacksize", "pthread_getattr_np", "pthread_sigmask",
                 "_pthread_cleanup_push", "_pthread_cleanup_pop"}
        self.assertEqual(split & set(undefined), set(), symbols.stdout)
        # Each import is a symbol lookup by ld.so at every exec under the
        # shim (~860 instructions; libc_functions.h): only the calls of every
        # start and those the compiler makes. __register_atfork weak: musl
        # has none, and the shim then passes calls through.
        self.assertLessEqual(set(undefined), {
            "__register_atfork", "getenv", "dl_iterate_phdr", "__errno_location", "clock_gettime",
            "memcpy", "memmove", "memset"}, symbols.stdout)
        self.assertEqual(undefined.get("__register_atfork"), "w", symbols.stdout)

    def test_a_copy_of_libunwind_that_cannot_be_loaded(self):
        # The shim loads libunwind.so.8 from its own directory first (rpath
        # $ORIGIN: the copy that travels with it, which needs glibc 2.34).
        # One that cannot be loaded (here: not an ELF file; a library without
        # libunwind's functions) sends it to the system's (an older image's
        # own): the program is profiled as usual, and nothing is printed.
        # Without any (a chroot: test_k8s.py, ShimTest) the program runs
        # unprofiled, or with HEAPWATCH_UNWIND=fp on frame pointers alone.
        for name, content in (("garbage", b"not an ELF file\n" * 64), ("other library", None)):
            with self.subTest(libunwind=name):
                shim_dir = tempfile.mkdtemp(dir=self.dir)
                shutil.copy(SHIM, shim_dir)
                fake = os.path.join(shim_dir, "libunwind.so.8")
                if content is None:
                    shutil.copy(os.path.realpath("/lib/x86_64-linux-gnu/libdl.so.2"), fake)
                else:
                    with open(fake, "wb") as f:
                        f.write(content)
                base = run([self.api], {"SHIM_MARKERS": "1"})
                main = self.record_markers(os.path.join(shim_dir, os.path.basename(SHIM)), base)
                self.assertEqual(main.stats["unwind_failures"], 0)
                self.assertGreater(max(len(pcs) for pcs in main.stacks.values()), 2)
                loaded = {os.path.realpath(m["path"]) for m in main.modules}
                self.assertIn(os.path.realpath("/usr/lib/x86_64-linux-gnu/libunwind.so.8"), loaded)

    def test_c23_sized_frees_free_through_the_shim(self):
        # free_sized and free_aligned_sized (glibc 2.43, and newer jemalloc's
        # own): a program built against glibc 2.43 binds them to an allocator
        # preloaded after the shim that defines them, past a shim without
        # them, and every sampled block it freed so would stay live. Here
        # glibc lacks them, so the program looks them up (exit 2 if absent)
        # and its run without profiling is the shim's pass-through.
        cmd = [program("shim_sized_free")]
        base = run(cmd, {"HEAPWATCH_DISABLE": "1"}, preload=SHIM)
        self.assertEqual(base.returncode, 0, base.stdout)
        conn = self.record_run(cmd, SHIM, base)
        markers = {6000000 + k for k in range(0, 10, 2)} | {6000000 + 64 * k for k in range(1, 10, 2)}
        self.assertEqual(sorted(s for s in conn.alloc_sizes if s in markers | {6000010}),
                         sorted(markers | {6000010}))
        self.assertEqual([s for s, _ in conn.live.values() if s >= 6000000], [6000010],
                         "blocks freed by free_sized and free_aligned_sized left the live set")

    def test_musl_program_runs_unprofiled(self):
        # shim_musl is built against musl, an Alpine image's C library. musl's
        # ld.so stopped it at load, exit 127, on the shim's one glibc-only
        # symbol (__register_atfork). Now the shim loads, says so in one line
        # and passes every call through, in the forked child too; nothing
        # connects to the collector.
        # With "exec" it runs itself once more, through fork and exec first:
        # the line is said once for both (the environment's HEAPWATCH_SAID),
        # or each command of a shell script in the image would print it.
        cmd = [program("shim_musl"), "exec"]
        want = run(cmd)
        self.assertEqual(want.returncode, 0, want.stderr)
        self.assertEqual(len(want.stdout.splitlines()), 2)
        for extra in ({}, {"HEAPWATCH_SAMPLE_BYTES": "1"}, {"HEAPWATCH_DISABLE": "1"}):
            with self.subTest(**extra):
                rx = WireReceiver(self.sock)
                self.addCleanup(rx.stop)
                r = run(cmd, shim_env(self.sock, **extra), preload=SHIM)
                self.assertEqual((r.returncode, r.stdout), (0, want.stdout), r.stderr)
                said = "" if extra.get("HEAPWATCH_DISABLE") else \
                    "heapwatch: the C library is not glibc (musl?); profiling disabled\n"
                self.assertEqual(r.stderr, said)
                rx.stop()
                self.assertEqual(rx.snapshot(), [])

    def test_threads_that_ask_for_their_attributes(self):
        # Each thread's first allocation is pthread_getattr_np's realloc, made
        # while glibc holds the thread's own lock (the JVM and Rust's std ask
        # at every thread's start). The shim called pthread_getattr_np again
        # from that sample to find the thread's stack, and the thread hung;
        # with HEAPWATCH_UNWIND=fp it always had (the walk needs the bounds).
        cmd = [program("shim_thread_attrs")]
        base = run(cmd)
        self.assertEqual(base.returncode, 0, base.stdout)
        for extra in ({}, {"HEAPWATCH_UNWIND": "fp"}):
            with self.subTest(**extra):
                conn = self.record_run(cmd, SHIM, base, **extra)
                self.assertEqual(conn.stats["unwind_failures"], 0)
                self.assertEqual(sum(1 for s in conn.alloc_sizes if 1000 <= s < 1008), 16 * 8)

    def test_allocating_is_no_cancellation_point(self):
        # libunwind checks an address by reading a pipe with read(), a
        # cancellation point: a thread with a cancellation pending was
        # cancelled inside its first sampled malloc (which never returned),
        # and the fork after it waited for that thread's unwind for ever.
        cmd = [program("shim_cancel")]
        base = run(cmd)
        self.assertEqual((base.returncode, base.stdout), (0, "cancelled=0 hung=0 failed=0\n"))
        for extra in ({}, {"HEAPWATCH_UNWIND_CACHES": "0"}):
            with self.subTest(**extra):
                conn = self.record_run(cmd, SHIM, base, **extra)
                self.assertEqual(conn.stats["unwind_failures"], 0)

    @unittest.skipUnless(os.geteuid() == 0, "dropping privileges needs root")
    def test_a_service_that_drops_its_privileges(self):
        # glibc's setuid() in a process with threads signals each of them
        # (SIGSETXID) and waits until all have changed credentials: a thread
        # that blocked the signal for good would hang it. Two threads
        # allocate through it, or none; the connection made as root carries
        # on after. The sender is no thread of glibc's (it does not make a
        # single-threaded program a threaded one), so glibc leaves its
        # credentials alone: the shim has it make the same calls, and every
        # task of the process has the new ids after a toggle of the
        # effective ones and after the drop (without that, 1-of-2 with no
        # threads, 3-of-4 with two: the sender kept root's).
        for threads in ("2", "0"):
            with self.subTest(threads=threads):
                cmd = [program("shim_setuid"), "65534", threads]
                base = run(cmd)
                self.assertEqual((base.returncode, base.stdout), (0, "uid=65534 allocations=some toggled=all tasks=all\n"))
                rx = WireReceiver(self.sock)
                self.addCleanup(rx.stop)
                r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=4096), preload=SHIM, timeout=60)
                self.assertEqual((r.returncode, r.stdout, r.stderr), (0, base.stdout, ""))
                conn = wait_until(lambda: next((c for c in rx.snapshot() if c.closed and c.stats), None),
                                  what="the program's connection closed")
                rx.stop()
                self.assertEqual(conn.errors, [])
                # At R = 4096 a block of 333,333 bytes goes unsampled with
                # probability e^-81.
                self.assertEqual(len(conn.live_of_size(444444)), 10, "kept before setuid")
                self.assertEqual(len(conn.live_of_size(333333)), 10, "kept after setuid")

    def test_a_single_threaded_program_stays_so_to_glibc(self):
        # The sender is a task of the process's that glibc does not count
        # (preload/sender.cc): once the shim samples, a program with one
        # thread of its own keeps glibc's single-thread shortcuts (stdio
        # without locks: getc and putc loops ran 1.5x with a thread of
        # glibc's, BENCHMARKS.md), and __libc_single_threaded stays 1, in
        # the program and in the child it forks, each of which has the sender
        # as a second task. Their samples arrive with stacks down to main(),
        # named after the module map that the sampling thread wrote.
        cmd = [program("shim_one_thread")]
        base = run(cmd)
        self.assertEqual((base.returncode, base.stdout), (0, "single_threaded=1 tasks=1\n" * 2))
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=4096), preload=SHIM, timeout=60)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "single_threaded=1 tasks=2\n" * 2, ""))
        conns = wait_until(lambda: (lambda done: done if len(done) == 2 else None)(
            [c for c in rx.snapshot() if c.closed and c.stats]), what="both processes' connections closed")
        rx.stop()
        exe = os.path.basename(program("shim_one_thread"))
        for conn, size in zip(sorted(conns, key=lambda c: -len(c.live_of_size(1 << 20))), (1 << 20, 512 << 10)):
            self.assertEqual(conn.errors, [])
            self.assertEqual(len(conn.live_of_size(size)), 16)
            # The child's blocks may come in its first resync, not as events.
            sid = next(sid for s, sid in conn.live.values() if s == size)
            modules = [next((m["path"] for m in conn.modules if m["start"] <= pc < m["end"]), "?")
                       for pc in conn.stacks[sid]]
            self.assertIn(exe, [os.path.basename(m) for m in modules], modules)

    def test_calls_that_need_one_thread(self):
        # setns into a mount namespace and unshare into a new user namespace
        # need a process with one thread; the shim's sender is one more, and
        # under the shim both failed with EINVAL ("unshare -U true" exited 1).
        # Around them the sender stops and starts again, on the same
        # connection: the blocks kept after the calls arrive too.
        # Also made through syscall(), which the shim sees too.
        for how in ([], ["syscall"]):
            with self.subTest(through=how or "glibc's wrappers"):
                cmd = [program("shim_unshare")] + how
                base = run(cmd)
                if (base.returncode, base.stdout) != (0, "setns=0 unshare=0\n"):
                    self.skipTest(f"namespaces not allowed here: {base.stdout.strip()}")
                conn = self.record_run(cmd, SHIM, base)  # R = 1: every block is a sample
                self.assertEqual(len(conn.live_of_size(22222)), 10, "kept before the calls")
                self.assertEqual(len(conn.live_of_size(11111)), 10, "kept after them")
        unshare = shutil.which("unshare")
        self.assertIsNotNone(unshare)
        for flags in (["-U"], ["-r"]):
            base = run([unshare, *flags, "true"])
            r = run([unshare, *flags, "true"], shim_env(self.sock), preload=SHIM)
            self.assertEqual((r.returncode, r.stderr), (base.returncode, base.stderr), flags)

    def confined_run(self, cmd, sock_path, env_sock):
        """Runs shim_confine as without the shim and under it (R = 16 MiB:
        the program's start samples nothing but in ~1 run in 2,000, which
        passes either way; the 400 MiB after the confinement, ~25 samples);
        checks that its samples have whole stacks."""
        base = run(cmd)
        self.assertEqual((base.returncode, base.stdout), (0, "confined=0\n"), base.stderr)
        rx = WireReceiver(sock_path)
        self.addCleanup(rx.stop)
        r = run(cmd, shim_env(env_sock, HEAPWATCH_SAMPLE_BYTES=16 << 20), preload=SHIM, timeout=60)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, base.stdout, ""))
        conn = wait_until(lambda: next((c for c in rx.snapshot() if c.closed and c.stats), None),
                          what="the program's connection closed")
        rx.stop()
        self.assertEqual(conn.errors, [])
        self.assertGreater(conn.stats["sampled_allocs"], 0, conn.stats)
        self.assertEqual(conn.stats["unwind_failures"], 0, conn.stats)
        # Stacks through the program's frames (Churn or Keep, main, ...).
        self.assertGreater(min(len(conn.stacks[sid]) for sid in conn.stacks), 2, conn.stacks)
        # And the program in the module map, which the sender reads from
        # /proc/self/maps: after a chroot that has no /proc, or a ruleset
        # that refuses the read, through the descriptor the shim opened
        # before the call.
        self.assertIn(os.path.basename(cmd[0]), [os.path.basename(m["path"]) for m in conn.modules],
                      conn.modules)

    def test_a_program_that_chroots_before_it_samples(self):
        # libunwind is loaded at a process's first sample, by path (the
        # shim's directory, then the system's): after a chroot neither is
        # there, and a daemon or a sandbox that chroots at its start would
        # have gone unprofiled ("cannot load libunwind.so.8"). The shim loads
        # it before the chroot, also one made through syscall(SYS_chroot).
        # The socket is in the new root.
        if os.geteuid() != 0:
            self.skipTest("chroot needs root (scripts/test.sh runs the suite as root)")
        for how in ("chroot", "chroot-syscall"):
            with self.subTest(how=how):
                root = tempfile.mkdtemp(prefix="heapwatch-chroot-")
                self.addCleanup(shutil.rmtree, root, ignore_errors=True)
                self.confined_run([program("shim_confine"), how, root, "100"],
                                  os.path.join(root, "hw.sock"), "/hw.sock")

    def test_a_program_that_confines_its_file_reads_with_landlock(self):
        # The same for a Landlock ruleset that refuses every file read
        # (landlock_restrict_self, through syscall()): libunwind's dlopen
        # after it failed with EACCES.
        probe = run([program("shim_confine"), "landlock", "0"])
        if probe.stdout != "confined=0\n":
            self.skipTest(f"Landlock not available here: {probe.stdout.strip()}")
        self.confined_run([program("shim_confine"), "landlock", "100"], self.sock, self.sock)

    def test_allocations_right_after_a_first_dlopen_have_whole_stacks(self):
        # At R = 1 the program's first sample comes inside its dlopen of a
        # plugin, where the shim's sender, which loads libunwind, waits for
        # the loader's lock: those samples keep their call site alone. The
        # program's 128 blocks right after the dlopen came while the sender
        # was still loading; captures had stopped waiting for good, and 1 to
        # 10 of them (a third, once, under CI's load) had the call site
        # alone. Now each capture waits while the sender runs.
        cmd = [program("hwsym_e2e_app"), "--plugin", program("libhwsym_e2e_plugin.so"),
               "--seconds", "0"]
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1), preload=SHIM)
        self.assertEqual((r.returncode, r.stdout), (0, "ready\n"), r.stderr)
        conn = wait_until(lambda: next((c for c in rx.snapshot() if c.closed and c.stats), None),
                          what="the program's connection closed")
        rx.stop()
        self.assertEqual(conn.errors, [])
        blocks = [sid for size, sid in conn.live.values() if size == 16384]  # hwsym e2e_app.cc
        self.assertEqual(len(blocks), 128)
        # OuterAlloc or the plugin's Grow, main, and the C library's start.
        self.assertGreaterEqual(min(len(conn.stacks[sid]) for sid in blocks), 4,
                                sorted(len(conn.stacks[sid]) for sid in blocks))

    def test_a_program_that_sandboxes_itself_with_seccomp(self):
        # Past its filter, socket() and connect() kill the program (SIGSYS).
        # The sender made them when it connected, in the program's forked
        # child (exit status 159) or on a reconnect. Before the filter
        # applies the shim goes off for good: what was kept before it
        # arrives, nothing after, and it says why.
        cmd = [program("shim_seccomp")]
        for how in ("prctl", "syscall"):
            with self.subTest(installed_with=how):
                base = run(cmd + [how])
                self.assertEqual((base.returncode, base.stdout), (0, "sandboxed, child 0\n"), base.stderr)
                rx = WireReceiver(self.sock)
                self.addCleanup(rx.stop)
                r = run(cmd + [how], shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1), preload=SHIM)
                self.assertEqual((r.returncode, r.stdout), (base.returncode, base.stdout), r.stderr)
                self.assertIn("profiling stops: the program sandboxes itself with", r.stderr)
                conns = wait_until(lambda: [c for c in rx.snapshot() if c.closed], what="the connection closed")
                rx.stop()
                self.assertEqual(len(conns), 1, "the child has no connection")
                self.assertEqual(conns[0].errors, [])
                self.assertEqual(len(conns[0].live_of_size(55555)), 10, "kept before the filter")
                self.assertEqual(len(conns[0].live_of_size(44444)), 0, "not profiled after it")

    def test_calls_through_syscall_and_prctl(self):
        # The shim interposes syscall() and prctl() to see a seccomp filter
        # coming: every other call behaves as glibc's (errno, six arguments,
        # a clone() whose child returns through syscall() as well).
        cmd = [program("shim_seccomp"), "calls"]
        base = run(cmd)
        self.assertEqual(base.returncode, 0, base.stderr)
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1), preload=SHIM)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, base.stdout, base.stderr))

    def test_python_script(self):
        script = os.path.join(self.dir, "work.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent("""
                import collections, json, re
                words = [("w%d" % (i * 7919 % 10007)) * (i % 5 + 1) for i in range(200000)]
                counts = collections.Counter(words)
                blob = json.dumps(sorted(counts.items())[:5000])
                print(len(counts), len(blob), sum(len(m) for m in re.findall(r"w\\d+", blob)))
                keep = [bytearray(100000) for _ in range(50)]
                print(sum(len(k) for k in keep))
                """))
        # Debian's python3 (a non-PIE executable that takes malloc's address)
        # and the interpreter running the tests, if that is another one.
        for py in sorted({os.path.realpath("/usr/bin/python3"), real_python()}):
            with self.subTest(python=py):
                want = self.baseline([py, script])
                rx = WireReceiver(self.sock)
                self.addCleanup(rx.stop)
                r = run([py, script], shim_env(self.sock), preload=SHIM)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, want)
                self.assertEqual(r.stderr, "")
                conn = wait_until(lambda: [c for c in rx.snapshot() if c.closed and c.hello],
                                  what="python's connection")[0]
                rx.stop()
                self.assertEqual(conn.errors, [])
                self.assertEqual(os.path.realpath(conn.exe), py)
                self.assertGreater(conn.stats["sampled_allocs"], 10)
                self.assertGreater(len(conn.stacks), 0)



def function_names(conn, pcs, exe):
    """The names of `exe`'s functions (nm's) at return addresses `pcs` of
    connection `conn`, None for a pc outside it."""
    listing = subprocess.run(["nm", "-C", "--defined-only", exe], capture_output=True, text=True,
                             check=True).stdout
    symbols = sorted((int(addr, 16), name) for addr, kind, name in
                     (line.split(" ", 2) for line in listing.splitlines() if line.count(" ") >= 2)
                     if kind in "tTW")
    starts = [a for a, _ in symbols]
    module = next(m for m in conn.modules if os.path.basename(m["path"]) == os.path.basename(exe))
    names = []
    for pc in pcs:
        if not module["start"] <= pc < module["end"]:
            names.append(None)
            continue
        i = bisect.bisect_right(starts, pc - 1 - module["load_bias"]) - 1
        names.append(symbols[i][1] if i >= 0 else None)
    return names


class SmallStackTest(ShimSocketTest):
    """Allocations where little stack is left (shim_small_stacks): in a
    coroutine and in a thread with 4 KiB left of 16 KiB, and in a signal
    handler on an alternate stack of 8 KiB, each over a guard page. The
    allocator needs less; libunwind needs more, and the shim unwinds on a
    stack of its own there (preload/side_stack.h). Before, the program died
    of SIGSEGV under the shim, also at the default rate."""

    ROUNDS = 100
    # place: (first marker size, the function the marker stacks must pass
    # through below AllocateMarkers)
    PLACES = {"coroutine": (3001, "CoroutineBody"), "handler": (5001, "RaiseSignal"),
              "thread": (7001, "ThreadBody")}

    def setUp(self):
        super().setUp()
        self.cmd = [program("shim_small_stacks"), str(self.ROUNDS)]
        self.base = run(self.cmd)
        self.assertEqual(self.base.returncode, 0, self.base.stderr)

    def test_runs_as_without_the_shim_at_the_default_rate(self):
        absent = os.path.join(self.dir, "absent.sock")
        for allocator in (None, JEMALLOC, TCMALLOC):
            base = run(self.cmd, preload=allocator) if allocator else self.base
            self.assertEqual(base.returncode, 0, base.stderr)
            preload = f"{SHIM}:{allocator}" if allocator else SHIM
            name = os.path.basename(allocator) if allocator else "glibc"
            for extra in ({}, {"HEAPWATCH_UNWIND": "fp"}, {"HEAPWATCH_UNWIND_CACHES": "0"}):
                for attempt in range(3):  # which allocations are sampled varies
                    with self.subTest(allocator=name, attempt=attempt, **extra):
                        r = run(self.cmd, shim_env(absent, **extra), preload=preload)
                        self.assertEqual((r.returncode, r.stdout, r.stderr),
                                         (base.returncode, base.stdout, base.stderr))

    def test_every_marker_has_its_stack_down_to_the_caller(self):
        exe = self.cmd[0]
        for unwind in ("libunwind", "fp"):
            env = {"HEAPWATCH_UNWIND": "fp"} if unwind == "fp" else {}
            conn = self.record_run(self.cmd, SHIM, self.base, **env)
            self.assertEqual(conn.stats["unwind_failures"], 0, unwind)
            for place, (first, below) in self.PLACES.items():
                sizes = range(first, first + self.ROUNDS)
                with self.subTest(unwind=unwind, place=place):
                    self.assertLessEqual(set(sizes), set(conn.alloc_sizes))
                    for size in (sizes[0], sizes[-1]):  # stepped, and from the trace cache
                        names = [n for n in function_names(conn, conn.stacks[conn.alloc_stacks[size]], exe)
                                 if n is not None]
                        self.assertTrue(names and "AllocateMarkers" in names[0], names)
                        self.assertTrue(any(below in n for n in names[1:]), names)


class SenderHeapTest(ShimSocketTest):
    """The sender thread's allocations (its dlopen of libunwind) come from
    the shim's arena, pinned in the live table's filter, not from glibc,
    whose first call in a thread gives it an arena of its own: 64 MiB of
    address space in two mappings for every fork to copy."""

    def test_the_sender_takes_no_arena_of_glibc(self):
        cmd = [program("shim_arenas")]
        base = run(cmd)
        self.assertEqual((base.returncode, base.stdout), (0, "1\n"), base.stderr)
        # Recorded at R = 1 (record_run: the same output as alone, where the
        # sender's allocations in glibc's made it 2). Its frees of its own
        # blocks (the dlopen's temporaries) take free()'s filter to the
        # arena. The blocks' pins count as no live sample.
        conn = self.record_run(cmd, SHIM, base)
        self.assertGreaterEqual(conn.stats["sampled_allocs"], 16)
        self.assertEqual(conn.stats["live_samples"], len(conn.live))
        # And at the default rate, with no collector.
        r = run(cmd, shim_env(os.path.join(self.dir, "absent.sock")), preload=SHIM)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "1\n", ""))


class AddressSpaceLimitTest(ShimSocketTest):
    """A program under a finite RLIMIT_AS, which it takes all of
    (shim_address_space). The shim may map ~37 MiB (its tables, the
    sender's buffers and stack, libunwind; ~100 MiB with the arena glibc
    gave the sender's thread before its allocations came from the shim's):
    under a limit of 195 MiB the program got half of what it gets without
    the shim (python3 under `ulimit -v 60000` died of MemoryError). Below
    ten times that need the shim profiles nothing, and says so."""

    LIMIT_MIB = 195

    def mib_taken(self, env=None, preload=None, own_limit=False):
        limit = self.LIMIT_MIB << 20

        def set_limit():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        cmd = [program("shim_address_space")] + ([str(self.LIMIT_MIB)] if own_limit else [])
        r = run(cmd, env, preload=preload, preexec_fn=None if own_limit else set_limit)
        self.assertEqual(r.returncode, 0, r.stderr)
        return int(r.stdout), r.stderr

    def test_a_limit_at_start_leaves_the_program_its_address_space(self):
        alone, _ = self.mib_taken()
        taken, stderr = self.mib_taken(shim_env(self.sock), SHIM)
        # Pass-through still maps the table and its filters (~2 MiB).
        self.assertGreaterEqual(taken, alone - 4, stderr)
        lines = stderr.splitlines()
        self.assertEqual(len(lines), 1, stderr)
        self.assertIn(f"profiling disabled: RLIMIT_AS is {self.LIMIT_MIB} MiB", lines[0])

    def test_a_line_said_after_start_goes_only_to_the_stderr_it_started_with(self):
        # The program closes its stderr and opens a data file, which gets
        # descriptor 2, then lowers its limit: the shim's line about it,
        # said at the first sample, went into the file.
        data = os.path.join(self.dir, "data")
        r = run([program("shim_address_space"), str(self.LIMIT_MIB), data], shim_env(self.sock),
                preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(data) as f:
            self.assertEqual(f.read(), "data\n")
        # With its stderr left alone, the same program says it (below).

    def test_a_limit_the_program_sets_after_start_is_seen_at_its_first_sample(self):
        # Set after start, before the first sample, which maps the tables and
        # starts the sender: neither happens.
        alone, _ = self.mib_taken(own_limit=True)
        taken, stderr = self.mib_taken(shim_env(self.sock), SHIM, own_limit=True)
        self.assertGreaterEqual(taken, alone - 4, stderr)
        self.assertIn(f"profiling disabled: RLIMIT_AS is {self.LIMIT_MIB} MiB", stderr)


if __name__ == "__main__":
    unittest.main()
