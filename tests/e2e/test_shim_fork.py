"""fork and exec under the shim: a multi-threaded stress program that forks
mid-run, and g++ compiling a file (gcc -> cc1plus -> as -> collect2 -> ld)."""
import os
import shutil
import subprocess
import unittest

from test_shim_support import SHIM, ShimSocketTest, WireReceiver, program, run, shim_env, wait_until

# The event ring's push and its first half, as nm names them.
PUSH_SYMBOL = "_ZN9heapwatch7preload9EventRing4PushERKNS_4wire11EventRecordEPb"
CLAIM_SYMBOL = "_ZN9heapwatch7preload9EventRing5ClaimEPm"


class ShimForkTest(ShimSocketTest):

    def test_stress_with_fork(self):
        self.stress_with_fork()

    def test_stress_with_fork_one_trace_cache(self):
        # One thread at a time unwinds with libunwind's trace cache, the others
        # step (preload/unwinder.h); the forked child starts with the cache of
        # the thread that forked, if it had one.
        self.stress_with_fork(HEAPWATCH_UNWIND_CACHES=1)

    def stress_with_fork(self, **extra):
        cmd = [program("shim_stress"), "4", "60000"]
        base = run(cmd)
        self.assertEqual(base.returncode, 0, base.stdout + base.stderr)
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        # A small R so that many allocations (and frees racing across threads)
        # go through the recording path.
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=4096, **extra), preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, base.stdout, "same checksums: no heap corruption")
        conns = wait_until(lambda: [c for c in rx.snapshot() if c.closed and c.hello]
                           if len([c for c in rx.snapshot() if c.closed]) >= 2 else None,
                           what="parent and child connections closed")
        parent = [c for c in conns if c.hello["ppid"] == os.getpid()]
        self.assertEqual(len(parent), 1, [c.hello for c in conns])
        parent = parent[0]
        child = [c for c in conns if c.hello["ppid"] == parent.pid]
        self.assertEqual(len(child), 1, "the forked child connects as a process of its own")
        child = child[0]
        for c in (parent, child):
            self.assertEqual(c.errors, [])
            self.assertGreater(c.stats["sampled_allocs"], 100)
        # The child's table is a copy of the parent's: it must be re-sent.
        self.assertGreaterEqual(child.resyncs, 1)
        self.assertGreater(child.hello["start_time_ns"], parent.hello["start_time_ns"])
        # The child's counters start from zero: it is a new process.
        self.assertLess(child.stats["sampled_allocs"], parent.stats["sampled_allocs"])
        # Both programs free everything they allocate before exiting; what is
        # left live is the runtime's (stdio, thread stacks' TLS...), a handful.
        self.assertLess(len(parent.live), 50)

    def test_fork_after_a_signal_handler_jumped_out_of_a_sample(self):
        # A handler that siglongjmps out of what it interrupted (timeouts,
        # fault handlers) left a sample halfway, with the thread's guard and
        # its mark inside libunwind up: every later fork waited for that
        # unwind for ever, and the thread sampled no more. shim_jump_out's
        # handler jumps out of libunwind's code 20 times at R = 1; main forks
        # 5 children while that thread waits; then the thread allocates 50
        # markers of 77,777 bytes and keeps them. The jump runs the sample's
        # cleanup buffer (glibc's _longjmp_unwind), which takes it all down.
        (parent, children), r = self.jump_out("20", "unwind")
        self.assertEqual(r.stderr, "")
        self.assertEqual(parent.alloc_sizes.count(77777), 50)
        self.assertEqual(parent.stats["dropped_events"], 0)
        for c in children:
            self.assertGreaterEqual(c.stats["sampled_allocs"], 200, c.stats)
            self.assertEqual(c.stats["unwind_failures"], 0, c.stats)

    def test_fork_after_a_jump_that_runs_no_cleanup(self):
        # GCC's __builtin_longjmp restores the registers and nothing else: the
        # mark stays up until the thread samples again from as high on its
        # stack. The first fork waits a second and gives up on it; the
        # children, born with it up, do not use libunwind (that thread might
        # have held libunwind's lock or the loader's), and the first says so.
        # Their samples keep the allocation's call site alone, found through
        # the shim's own frame pointers (they were unwind failures before;
        # the children free every block at once, so no stack reaches the wire).
        (parent, children), r = self.jump_out("20", "unwind", how="builtin")
        self.assertEqual(r.stderr, "heapwatch: forked while another thread's unwind was still marked"
                         " under way after 1 s (a signal handler jumped out of it?); this child does"
                         " not use libunwind\n")
        for c in children:
            self.assertGreaterEqual(c.stats["sampled_allocs"], 200, c.stats)
            self.assertEqual(c.stats["unwind_failures"], 0, c.stats)

    def test_a_push_a_signal_handler_jumped_out_of(self):
        # Out of the event ring's push, after it claimed its position: the
        # sender waited at that position for ever, and no event after it
        # reached the collector. It now gives up on it after 250 ms (a drop,
        # and the table sent again). Thirty jumps from Claim or Push, and 2 s
        # before the exit. A jump from before the claim or after the publish
        # leaves nothing behind, so runs go on until one left a position
        # unpublished (a drop); every run must deliver the markers.
        nm = subprocess.run(["nm", "-S", SHIM], capture_output=True, text=True, check=True).stdout
        ranges = []
        for line in nm.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[3] in (PUSH_SYMBOL, CLAIM_SYMBOL):
                ranges.append((int(parts[0], 16), int(parts[0], 16) + int(parts[1], 16)))
        self.assertEqual(len(ranges), 2, "EventRing::Push and Claim in the shim's symbols")
        where = "%x-%x" % (min(a for a, _ in ranges), max(b for _, b in ranges))
        # How often a jump lands between a claim and its publish depends on
        # the code's layout and the machine: most land before the claim
        # (Claim's wait for its slot's line). With three jumps a run, a build
        # of 19eab77 left none in 4 x 5 runs, and one CI run of e925e8c none
        # in 10; thirty take ~0.3 s a run. Jumps only from between the claim
        # and the publish (Push after its call to Claim) were ~100 times
        # rarer: 7-9 s of churn at R = 1 for three, whose events outran the
        # test's receiver and the 2 s before the exit.
        for _ in range(10):
            (parent, children), r = self.jump_out("30", where, "2000")
            self.assertEqual(r.stderr, "")
            self.assertEqual(len(parent.live_of_size(77777)), 50)
            for c in children:
                self.assertGreaterEqual(c.stats["sampled_allocs"], 200, c.stats)
            if parent.stats["dropped_events"] >= 1:
                self.assertGreaterEqual(parent.resyncs, 1)
                return
        self.fail("in 10 runs no jump left a ring position unpublished")

    def test_threads_a_signal_handler_ended_in_a_sample(self):
        # pthread_exit from the handler (a cancellation ends a thread the
        # same way): the exiting thread's mark inside libunwind stayed up,
        # and the next fork waited for it for ever. Twenty threads in turn
        # are ended inside libunwind; now each takes its mark down as it
        # exits, so no fork waits and every child unwinds.
        # A ring of the default size, not the tests' 2^20 slots: 20 threads at
        # R = 1 push ~2 M events a second, more than this Python receiver
        # reads on a loaded machine, and a backlog of 2^20 could not be
        # delivered within the exit's 1 s bound (the markers, last, were lost
        # in ~1 run of 10 beside two busy loops). A smaller ring drops early
        # and sends the table instead.
        (parent, children), r = self.jump_out("20", "unwind", how="exit", ring_slots=None)
        self.assertEqual(r.stderr, "")
        # Main's markers, live at the exit (by event, or by a resync after
        # the receiver fell behind the threads' churn).
        self.assertEqual(len(parent.live_of_size(77777)), 50)
        for c in children:
            self.assertGreaterEqual(c.stats["sampled_allocs"], 200, c.stats)
            self.assertEqual(c.stats["unwind_failures"], 0, c.stats)

    def jump_out(self, jumps, where, settle_ms="0", how="jump", ring_slots=1 << 20):
        """Runs shim_jump_out at R = 1 (forks 5 children, 50 markers); it
        must behave as without the shim. Returns its connection and its
        children's, and the run. `ring_slots`: HEAPWATCH_RING_SLOTS (None:
        the default)."""
        cmd = [program("shim_jump_out"), jumps, "5", "50", where, settle_ms, how]
        base = run(cmd)
        self.assertEqual((base.returncode, base.stdout),
                         (0, f"jumps={jumps} forks=5 hung=0 failed=0 cancellable=1\n"))
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        env = shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1)
        if ring_slots:
            env["HEAPWATCH_RING_SLOTS"] = str(ring_slots)
        r = run(cmd, env, preload=SHIM, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, base.stdout), r.stderr)

        # The processes have exited: every connection they made closes once
        # read to its end. All of them, not the first six: a sender that
        # met the write deadline (a receiver starved of CPU) reconnects.
        def all_closed():
            conns = rx.snapshot()
            return conns if len(conns) >= 6 and all(c.closed for c in conns) else None
        conns = [c for c in wait_until(all_closed, what="the parent's and five children's connections closed")
                 if c.hello]
        rx.stop()
        # Each process's connections in the order they were made.
        by_pid = {}
        for c in conns:
            by_pid.setdefault(c.pid, []).append(c)
        parents = [pid for pid, cs in by_pid.items() if cs[0].hello["ppid"] == os.getpid()]
        self.assertEqual(len(parents), 1, [c.hello for c in conns])
        children = [cs for cs in by_pid.values() if cs[0].hello["ppid"] == parents[0]]
        self.assertEqual(len(children), 5)
        for cs in by_pid.values():
            # Each last connection says how many came before it. The shim
            # ends one it cannot write to within 2 s, where a frame may stop
            # halfway: only there, with a reconnect after it.
            self.assertTrue(cs[-1].stats, cs[-1].frames[-5:])
            self.assertEqual(cs[-1].stats["reconnects"], len(cs) - 1)
            self.assertEqual(cs[-1].errors, [])
            for c in cs[:-1]:
                self.assertIn(c.errors, ([], ["truncated frame"]))
        return (by_pid[parents[0]][-1], [cs[-1] for cs in children]), r

    def test_fork_while_other_threads_unwind(self):
        # Without trace caches every sample steps with unw_step, which holds
        # libunwind's cache lock and the loader's for most of its time, so
        # children are forked with those locks held by threads they do not
        # have. Children used to hang at their first sample (3 to 12 forks
        # in); the program kills and counts a child not done in 5 s.
        cmd = [program("shim_fork_unwinding"), "3", "200"]
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=4096, HEAPWATCH_UNWIND_CACHES=0),
                preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("forks=200 hung=0 failed=0", r.stdout)
        def closed_with_stats():
            return [c for c in rx.snapshot() if c.closed and c.hello and c.stats]

        parent = wait_until(lambda: [c for c in closed_with_stats() if c.hello["ppid"] == os.getpid()]
                            or None, what="the parent's connection closed")
        self.assertEqual(len(parent), 1)
        self.assertGreater(parent[0].stats["sampled_allocs"], 100)
        # A child unwinds from its first sample (fork waits for the parent's
        # unwinds in flight): children report samples of their own.
        children = [c for c in closed_with_stats() if c.hello["ppid"] == parent[0].pid]
        self.assertTrue(any(c.stats["sampled_allocs"] > 0 for c in children),
                        f"{len(children)} children reported: {[c.stats for c in children][:3]}")

    def test_a_child_forked_while_another_thread_held_the_loaders_lock(self):
        # glibc leaves the loader's list lock held in a child forked while
        # another thread held it (here inside a dl_iterate_phdr callback, as a
        # dlopen or dlclose holds it). The child only allocates, which alone
        # it does and exits. Under the shim its first sample's unwind waited
        # for that lock for good (the parent had sampled: libunwind loaded),
        # or its sender's load of libunwind did and then its exit() (the
        # parent had not). Now such a child is not profiled, and says why.
        for parent_blocks in ("64", "0"):
            with self.subTest(parent_blocks=parent_blocks):
                cmd = [program("shim_fork_in_loader"), parent_blocks]
                base = run(cmd)
                self.assertEqual(base.returncode, 0, base.stdout + base.stderr)
                self.assertIn("child=done", base.stdout)
                rx = WireReceiver(self.sock)
                self.addCleanup(rx.stop)
                r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=4096), preload=SHIM, timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("child=done", r.stdout)
                self.assertIn("forked while another thread held the loader's lock", r.stderr)
                if parent_blocks != "0":
                    # The parent itself is profiled as ever.
                    parent = wait_until(lambda: next((c for c in rx.snapshot() if c.closed and c.stats
                                                      and c.hello["ppid"] == os.getpid()), None),
                                        what="the parent's connection closed")
                    self.assertEqual(parent.errors, [])
                    self.assertGreater(parent.stats["sampled_allocs"], 0)
                rx.stop()

    def copy(self, how, threads, fork_first="0", sample_bytes=4096):
        """Runs shim_copy HOW THREADS FORK_FIRST at R = 4096 (a child made by HOW keeps
        30 blocks of 666,666 bytes, the parent 20 of 555,555: each goes
        unsampled with probability under e^-135). Returns the
        run's parent and child pids, the child's exit_ms, the connections
        and the run."""
        cmd = [program("shim_copy"), how, threads, fork_first]
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=sample_bytes), preload=SHIM, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        fields = dict(kv.split("=") for kv in r.stdout.split())
        parent_pid, child_pid, exit_ms = (int(fields[k]) for k in ("parent", "child", "exit_ms"))
        parent = wait_until(lambda: next((c for c in rx.snapshot()
                                          if c.closed and c.stats and c.pid == parent_pid), None),
                            what="the parent's connection closed")
        self.assertEqual(parent.errors, [])
        self.assertNotIn(666666, parent.alloc_sizes, "the child's events went out on its own")
        if sample_bytes == 4096:
            self.assertEqual(len(parent.live_of_size(555555)), 20)
        return child_pid, exit_ms, rx, r

    def test_a_child_copied_without_forks_handlers(self):
        # _Fork() and clone() without CLONE_VM run no atfork handler: the
        # child had the parent's sender state but no sender. Its samples
        # went into a ring nobody drained, and its exit() waited the exit
        # flush's whole second for a sender that was not there (exit_ms 1001
        # in every run). Now the child's first sample finds the copy (a page
        # the kernel wipes in it) and adopts it as fork's handler would: a
        # process of its own, whose exit flush delivers what it kept.
        for how in ("fork", "_Fork", "clone"):
            with self.subTest(how=how):
                child_pid, exit_ms, rx, r = self.copy(how, "0")
                self.assertEqual(r.stderr, "")
                self.assertLess(exit_ms, 500, "the child's exit waited for a sender")
                child = wait_until(lambda: next((c for c in rx.snapshot()
                                                 if c.closed and c.stats and c.pid == child_pid),
                                                None),
                                   what=f"the {how} child's connection closed")
                rx.stop()
                self.assertEqual(child.errors, [])
                self.assertEqual(child.hello["ppid"], int(r.stdout.split()[0].split("=")[1]))
                self.assertEqual(len(child.live_of_size(666666)), 30, "its blocks, delivered at exit")
                # Its copy of the parent's blocks is its heap too (the table stays).
                self.assertEqual(len(child.live_of_size(555555)), 20)
                self.assertGreaterEqual(child.resyncs, 1)

    def test_a_copied_child_that_forks_first(self):
        # A copy that forks before it samples decides at the fork's prepare
        # handler (which would otherwise wait for the flag and marks of
        # threads not in the copy): it is adopted there, and its own child
        # is a fork like any other.
        for how in ("_Fork", "clone"):
            with self.subTest(how=how):
                child_pid, exit_ms, rx, r = self.copy(how, "0", "1")
                self.assertEqual(r.stderr, "")
                self.assertLess(exit_ms, 500, "the child's exit waited for a sender")
                def closed(pred):
                    return next((c for c in rx.snapshot() if c.closed and c.stats and pred(c)), None)
                child = wait_until(lambda: closed(lambda c: c.pid == child_pid),
                                   what=f"the {how} child's connection closed")
                grandchild = wait_until(lambda: closed(lambda c: c.hello["ppid"] == child_pid),
                                        what=f"the {how} child's child's connection closed")
                rx.stop()
                self.assertEqual((child.errors, grandchild.errors), ([], []))
                self.assertEqual(len(child.live_of_size(666666)), 30)
                self.assertGreater(grandchild.stats["sampled_allocs"], 100)
                self.assertFalse(grandchild.live_of_size(666666), "forked before the child kept them")

    def test_a_copied_child_that_started_threads_says_so(self):
        # Adopting the copy needs its thread alone (ForkChild's resets);
        # one that started threads first passes calls through and says so.
        # At R = 16 MiB the child's first sample is its 1 GiB block, once its
        # thread runs (pthread_create's own allocations, which a copy alone
        # may sample first, are a few hundred bytes).
        for how in ("_Fork", "clone"):
            with self.subTest(how=how):
                child_pid, exit_ms, rx, r = self.copy(how, "1", sample_bytes=16 << 20)
                self.assertEqual(r.stderr, "heapwatch: a process copied without fork()'s handlers "
                                 "(_Fork, clone) is not profiled: it has started threads\n")
                self.assertLess(exit_ms, 500, "the child's exit waited for a sender")
                rx.stop()
                self.assertFalse([c for c in rx.snapshot() if c.pid == child_pid])

    def test_a_forked_child_that_started_threads_first_is_profiled(self):
        # fork()'s child handler leaves the copy token wiped (its write was a
        # page fault of every fork): the child's first sample finds it so,
        # as in a copy without the handlers. That sample comes after the
        # child started a thread here; a copy would then pass calls through,
        # but this child was made a process of its own by the handler, and is
        # profiled as any.
        child_pid, exit_ms, rx, r = self.copy("fork", "1", sample_bytes=16 << 20)
        self.assertEqual(r.stderr, "")
        self.assertLess(exit_ms, 500, "the child's exit waited for a sender")
        child = wait_until(lambda: next((c for c in rx.snapshot()
                                         if c.closed and c.stats and c.pid == child_pid), None),
                           what="the fork child's connection closed")
        rx.stop()
        self.assertEqual(child.errors, [])
        self.assertEqual(child.hello["ppid"], int(r.stdout.split()[0].split("=")[1]))
        # Its 1 GiB block at least (sampled but for a chance of e^-64). Its
        # event may not be in the stream: it was allocated and freed before
        # the child's connection, whose table re-sent (a fork child's always
        # is) stands for what came before it.
        self.assertGreaterEqual(child.stats["sampled_allocs"], 1)

    def test_a_vfork_child_takes_the_first_sample(self):
        # The sender starts at a process's first sample. Taken in a vfork
        # child, that started a thread in the child (gone at its _exit) and
        # noted it in memory the parent shares: the parent never started its
        # own, said nothing, and its exit waited a second for a sender that
        # was not there. The parent's own first sample starts it now.
        cmd = [program("shim_vfork")]
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        r = run(cmd, shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=1), preload=SHIM, timeout=60)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "child=0\n", ""))
        conn = wait_until(lambda: next((c for c in rx.snapshot() if c.closed and c.stats), None),
                          what="the parent's connection closed")
        rx.stop()
        self.assertEqual(conn.errors, [])
        self.assertEqual(conn.hello["ppid"], os.getpid())
        self.assertEqual(len(conn.live_of_size(44444)), 10)

    def test_gcc_fork_exec_chain(self):
        src = os.path.join(self.dir, "hello.cc")
        with open(src, "w") as f:
            f.write('#include <map>\n#include <string>\n#include <cstdio>\n'
                    'int main() { std::map<std::string, int> m; m["a"] = 1;'
                    ' std::printf("%zu\\n", m.size()); }\n')
        gxx = shutil.which("g++")
        self.assertIsNotNone(gxx)
        out0 = os.path.join(self.dir, "hello0")
        base = run([gxx, "-O1", "-o", out0, src])
        self.assertEqual(base.returncode, 0, base.stderr)
        rx = WireReceiver(self.sock)
        self.addCleanup(rx.stop)
        out1 = os.path.join(self.dir, "hello1")
        # A process's sender starts at its first sample; at R = 4096 every
        # one of the chain samples (collect2 allocates the least).
        r = run([gxx, "-O1", "-o", out1, src], shim_env(self.sock, HEAPWATCH_SAMPLE_BYTES=4096),
                preload=SHIM)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, base.stderr)
        self.assertEqual(subprocess.run([out1], capture_output=True, text=True).stdout, "1\n")
        # Debian names them x86_64-linux-gnu-g++-12, ...-as, ...-ld.bfd.
        want = ("g++-12", "cc1plus", "-as", "collect2", "ld.bfd")

        def all_connected():
            names = {os.path.basename(c.exe) for c in rx.snapshot() if c.hello}
            return names if all(any(n.endswith(w) for n in names) for w in want) else None
        got = wait_until(all_connected, what=f"connections from {want}")
        for c in rx.snapshot():
            self.assertEqual(c.errors, [], c.exe)
        # cc1plus allocates plenty: it must have sent samples with stacks.
        cc1 = [c for c in rx.snapshot() if c.exe.endswith("cc1plus")][0]
        wait_until(lambda: cc1.closed, what="cc1plus done")
        self.assertGreater(cc1.stats["sampled_allocs"], 0)
        self.assertGreater(len(cc1.stacks), 0)
        self.assertTrue(got)


class ShimLayoutTest(unittest.TestCase):
    def test_the_small_globals_a_forked_child_writes_share_one_page(self):
        # Each page of the shim's data that a forked child's handler writes
        # is a copy-on-write fault of every fork (~10 us on the development
        # VM), also of the children that exec or _exit at once. The handler
        # writes only small globals (g_shim, the sender's, the unwinder's):
        # .data and .bss must stay within one page, large arrays going to
        # .lbss (HEAPWATCH_LARGE_ZEROED). A 16 KiB buffer left in .bss
        # spread them over three pages (5 faults a child instead of 2).
        out = subprocess.run(["readelf", "-SW", SHIM], capture_output=True, text=True, check=True).stdout
        sections = {}
        for line in out.splitlines():
            parts = line.replace("[ ", "[").split()
            if len(parts) > 6 and parts[1] in (".data", ".bss"):
                sections[parts[1]] = (int(parts[3], 16), int(parts[5], 16))
        self.assertEqual(set(sections), {".data", ".bss"}, out)
        first = sections[".data"][0] & ~4095
        end = sections[".bss"][0] + sections[".bss"][1]
        self.assertLessEqual(end - first, 4096, f".data and .bss span {end - first} bytes from {first:#x}")

    def test_the_code_a_forked_child_runs_is_together(self):
        # The kernel maps the pages around a fault in code, within an aligned
        # 64 KiB: a child's handler spread over 37 KiB of the shim faulted in
        # two such windows in more than half of the places the shim loads at
        # (HEAPWATCH_FORK_CHILD_CODE, raw_memory.h). The handler and what it
        # calls on its usual path must stay within a few KiB.
        out = subprocess.run(["nm", "-C", SHIM], capture_output=True, text=True, check=True).stdout
        wanted = ["heapwatch::preload::ForkChild()", "heapwatch::preload::UnwinderForkChild()",
                  "heapwatch::preload::LoadForkChild(bool)", "heapwatch::preload::SideStackForkChild()",
                  "heapwatch::preload::UnloadedCodeForkChild()", "heapwatch::preload::SenderForkChild()",
                  "heapwatch::preload::OwnDescriptor::CloseKeepingNumber() const",
                  "heapwatch::preload::EventRing::DiscardUnsafe()", "heapwatch::preload::ForkWordsWiped()"]
        addresses = {}
        for line in out.splitlines():
            address, _, rest = line.partition(" ")
            kind, _, name = rest.partition(" ")
            if kind in ("t", "T") and name in wanted:
                addresses[name] = int(address, 16)
        self.assertEqual(set(addresses), set(wanted), out)
        span = max(addresses.values()) - min(addresses.values())
        self.assertLess(span, 4096, {name: hex(a) for name, a in addresses.items()})


if __name__ == "__main__":
    unittest.main()
