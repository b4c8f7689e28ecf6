"""Module maps after dlopen/dlclose: a program under the shim loads a plugin,
allocates from it and keeps the blocks; the collector must learn the new
module and name the plugin's function. Then the plugin is freed and closed,
another is loaded (often at the same address), and the collector must see
the map change again: the first plugin gone, the second one named.

And blocks a plugin allocated and never freed outlive it: after it is
closed and another is loaded at the same address, each block stays named
after the plugin that allocated it (module and function), whether the
sender had time to send a map between the steps or not.

And a plugin loaded where another was unwinds with its own frames, not
with what libunwind's trace cache remembers of the other one's: the shim
keeps the addresses of unloaded code free while it can, and retires the
caches when it cannot."""
import os
import re
import unittest

from harness import CollectorTestCase, find_path, wait_until, walk_tree
from test_shim_support import command, finish_interactive, program, start_interactive

ALPHA = program("libshim_plugin_alpha.so")
BETA = program("libshim_plugin_beta.so")
FPFRAME = program("libshim_plugin_fpframe.so")
SPFRAME = program("libshim_plugin_spframe.so")
CTOR = program("libshim_plugin_ctor.so")
CTOR_BLOCKS, CTOR_BLOCK_BYTES = 32, (16 << 20) + 7  # shim_plugin_ctor.cc
BLOCKS, BLOCK_BYTES = 32, 65536


def settled_modules(test, pid):
    """The process's module count once its start's maps are all in. The
    sender sends a map when it connects, which may come before the first
    sample's thread has loaded libunwind (a run saw 5 modules, then 6 60 ms
    later); it reads the mappings again within a second
    (sender_connection.cc), so a count that holds for 1.5 s is settled."""
    seen = []

    def settled():
        seen.append(test.collector.wait_for_process(pid, lambda p: p["connected"])["modules"])
        return seen[-1] if len(seen) >= 2 and seen[-1] == seen[-2] else None
    return wait_until(settled, 20, interval=1.5, what=f"process {pid}'s module count to settle")


class ModuleMapTest(CollectorTestCase):
    def start(self):
        return start_interactive(self, "shim_dlopen", SAMPLE_BYTES=1)

    def command(self, proc, line):
        return command(self, proc, line)


    def profile(self, pid):
        return self.collector.get_json(f"/api/v1/profile?pid={pid}&type=inuse_space")

    def wait_for_plugin(self, pid, namespace, library):
        """The plugin's Hoard(), named, in the plugin's module, holding the blocks."""
        def named():
            tree = self.profile(pid)
            found = find_path(tree["root"], lambda n: n["name"].startswith(namespace + "::Hoard"))
            # The blocks' events may still be arriving when the name is in.
            return (tree, found) if found and found[0]["value"] >= BLOCKS * BLOCK_BYTES else None
        tree, (node, path) = wait_until(named, 30, what=f"{namespace}::Hoard holding its blocks")
        self.assertEqual(os.path.basename(node["module"]), os.path.basename(library), node)
        names = [n["name"] for n in path]
        self.assertIn("main", names)  # the path runs through the program into the plugin
        return tree

    def test_dlopen_and_dlclose_reach_the_collector(self):
        proc = self.start()
        pid = proc.pid
        base = settled_modules(self, pid)

        opened_alpha = self.command(proc, f"o {ALPHA}")
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base + 1, timeout=20)
        self.command(proc, f"a {BLOCKS} {BLOCK_BYTES}")
        self.wait_for_plugin(pid, "plugin_alpha", ALPHA)

        # The plugin's blocks go, then the plugin: the map shrinks back.
        self.command(proc, "f")
        self.assertEqual(self.command(proc, "c"), "closed unloaded")
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base, timeout=20)

        opened_beta = self.command(proc, f"o {BETA}")
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base + 1, timeout=20)
        self.command(proc, f"a {BLOCKS} {BLOCK_BYTES}")
        tree = self.wait_for_plugin(pid, "plugin_beta", BETA)
        # Whether or not beta landed where alpha was (both are printed), no
        # live byte is attributed to alpha any more.
        alpha_nodes = [n for n in walk_tree(tree["root"])
                       if n.get("module", "").endswith("libshim_plugin_alpha.so") and n["value"] > 0]
        self.assertEqual(alpha_nodes, [], f"alpha {opened_alpha}, beta {opened_beta}")

        self.command(proc, "f")
        self.assertEqual(self.command(proc, "c"), "closed unloaded")
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base, timeout=20)
        finish_interactive(self, proc)

    def test_a_plugin_that_allocates_as_it_loads(self):
        # The shim loads libunwind at a process's first sample, in its
        # sender. When that sample comes inside the program's dlopen (here
        # from the plugin's constructor), the sender's dlopen waits for the
        # loader's lock, which the sampling thread holds. The shim sees the
        # sender sleep and stops waiting for it (at first it waited 250 ms,
        # then dropped the samples as unwind failures); until libunwind is
        # loaded, a sample keeps the allocation's call site, found through
        # the shim's own frame pointers. At R = 1 MiB the program's start
        # samples nothing but in ~1 run in 100 (libunwind is then loaded
        # before, and the stacks are whole: this passes either way); a block
        # of 16 MiB goes unsampled with probability e^-16.
        proc = start_interactive(self, "shim_dlopen", SAMPLE_BYTES=1 << 20)
        self.command(proc, f"o {CTOR}")
        want = CTOR_BLOCKS * CTOR_BLOCK_BYTES * 0.999

        def held():
            if not self.collector.process(proc.pid):
                return None
            nodes = [n for n in walk_tree(self.profile(proc.pid)["root"]) if "KeepBlocks" in n["name"]]
            return nodes if sum(n["value"] for n in nodes) >= want else None
        nodes = wait_until(held, 30, what="KeepBlocks holding the plugin's blocks")
        for node in nodes:
            self.assertEqual(os.path.basename(node["module"]), os.path.basename(CTOR), node)
        counters = self.collector.process(proc.pid)["counters"]
        self.assertEqual(counters["unwind_failures"], 0, counters)
        finish_interactive(self, proc)


class LeakedPluginBlocksTest(CollectorTestCase):
    """Plugin alpha allocates blocks and is closed with them live; plugin
    beta, built from the same source and loaded where alpha was, allocates
    more. Their Hoard()s sit at the same offsets, so the pcs of the two
    plugins' stacks are the same numbers.

    Without trace caches (HEAPWATCH_UNWIND_CACHES=0): with them, the shim
    keeps alpha's code addresses from beta (StaleTraceCacheTest). These
    tests are about a map in which an object took another's place, which
    can still happen (past the reservations, or code mapped by other means)."""
    ALPHA_BLOCKS, BETA_BLOCKS = 24, 8

    def start(self):
        return start_interactive(self, "shim_dlopen", SAMPLE_BYTES=1, UNWIND_CACHES=0)

    command = ModuleMapTest.command

    def hoards(self, pid):
        """Live bytes under each plugin's Hoard(), by (namespace, module)."""
        tree = self.collector.get_json(f"/api/v1/profile?pid={pid}&type=inuse_space")
        found = {}
        for node in walk_tree(tree["root"]):
            m = re.match(r"(plugin_\w+)::Hoard", node["name"])
            if m:
                key = (m.group(1), os.path.basename(node.get("module", "")))
                found[key] = found.get(key, 0) + node["value"]
        return found

    def check_attribution(self, pid, where):
        expected = {("plugin_alpha", os.path.basename(ALPHA)): self.ALPHA_BLOCKS * BLOCK_BYTES,
                    ("plugin_beta", os.path.basename(BETA)): self.BETA_BLOCKS * BLOCK_BYTES}
        total = sum(expected.values())
        # Every block under some plugin's Hoard() (names come from the
        # symbolizer a little later), then: each under its own.
        found = wait_until(lambda: (lambda h: h if sum(h.values()) >= total else None)(self.hoards(pid)),
                           30, what=f"{total} bytes under the plugins' Hoard()s")
        self.assertEqual(found, expected, where)

    def test_blocks_stay_with_the_plugin_that_allocated_them(self):
        proc = self.start()
        pid = proc.pid
        base = settled_modules(self, pid)
        alpha_base = self.command(proc, f"o {ALPHA}").split()[1]
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base + 1, timeout=20)
        self.command(proc, f"a {self.ALPHA_BLOCKS} {BLOCK_BYTES}")
        self.assertEqual(self.command(proc, "c"), "closed unloaded")
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base, timeout=20)
        beta_base = self.command(proc, f"o {BETA}").split()[1]
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base + 1, timeout=20)
        self.command(proc, f"a {self.BETA_BLOCKS} {BLOCK_BYTES}")
        self.assertEqual(alpha_base, beta_base, "beta was not loaded where alpha was")
        self.check_attribution(pid, f"alpha and beta at {alpha_base}")
        finish_interactive(self, proc)

    def test_blocks_stay_with_their_plugin_when_the_swap_beats_the_sender(self):
        # Allocate, close, open the other and allocate again in one go: the
        # shim's sender sends a new map before the stacks it has queued, so
        # alpha's stacks reach the collector after the map with beta in
        # alpha's place.
        proc = self.start()
        pid = proc.pid
        base = settled_modules(self, pid)
        self.command(proc, f"o {ALPHA}")
        self.collector.wait_for_process(pid, lambda p: p["modules"] == base + 1, timeout=20)
        swapped = self.command(proc, f"s {BETA} {self.ALPHA_BLOCKS} {self.BETA_BLOCKS} {BLOCK_BYTES}")
        _, alpha_base, beta_base, unloaded = swapped.split()
        self.assertEqual(unloaded, "unloaded", swapped)
        self.assertEqual(alpha_base, beta_base, "beta was not loaded where alpha was")
        self.check_attribution(pid, f"alpha and beta at {alpha_base}, swapped at once")
        finish_interactive(self, proc)


class StaleTraceCacheTest(CollectorTestCase):
    """Two plugins whose hw_plugin_alloc returns from malloc at the same
    offset: fpframe's caller frame is found from rbp, spframe's from rsp with
    rbp 0 across the call. libunwind's trace cache remembers a pc's rule for
    the thread's life. The shim before this test existed loaded spframe
    where fpframe had been, and its unwind took fpframe's rule there, read
    near address 0 and killed the program (SIGSEGV)."""
    ALLOCS, BYTES = 64, 64  # 64 samples at R = 1: the thread has its trace cache

    def start(self):
        return start_interactive(self, "shim_dlopen", SAMPLE_BYTES=1)

    command = ModuleMapTest.command

    def cycle(self, proc, library):
        """Opens `library`, allocates from it, frees, closes; its base."""
        base = self.command(proc, f"o {library}").split()[1]
        self.command(proc, f"a 20 {self.BYTES}")
        self.command(proc, "f")
        self.assertEqual(self.command(proc, "c"), "closed unloaded")
        return base

    def check_frames(self, pid, library):
        """All of the last plugin's live bytes under its hw_plugin_alloc, in
        its module, called from main: its own frame was unwound."""
        def matches(node, path=()):
            path = path + (node,)
            if node["name"] == "hw_plugin_alloc" and node["value"] > 0:
                yield node, path
            for child in node.get("children", []):
                yield from matches(child, path)

        def found():
            tree = self.collector.get_json(f"/api/v1/profile?pid={pid}&type=inuse_space")
            hits = list(matches(tree["root"]))
            return hits if sum(n["value"] for n, _ in hits) >= self.ALLOCS * self.BYTES else None
        hits = wait_until(found, 30, what=f"hw_plugin_alloc of {library} holding its blocks")
        for node, path in hits:
            self.assertEqual(os.path.basename(node.get("module", "")), os.path.basename(library), node)
            self.assertIn("main", [n["name"] for n in path])
        self.assertEqual(sum(n["value"] for n, _ in hits), self.ALLOCS * self.BYTES)

    def test_a_plugin_loaded_after_another_unwinds_with_its_own_frames(self):
        proc = self.start()
        self.collector.wait_for_process(proc.pid, lambda p: p["connected"])
        fp_base = self.command(proc, f"o {FPFRAME}").split()[1]
        self.command(proc, f"a {self.ALLOCS} {self.BYTES}")
        self.command(proc, "f")
        self.assertEqual(self.command(proc, "c"), "closed unloaded")
        sp_base = self.command(proc, f"o {SPFRAME}").split()[1]
        self.command(proc, f"a {self.ALLOCS} {self.BYTES}")
        # The shim kept fpframe's code addresses free.
        self.assertNotEqual(fp_base, sp_base)
        self.check_frames(proc.pid, SPFRAME)
        finish_interactive(self, proc)

    def test_past_its_reservations_the_shim_retires_the_caches(self):
        # Each unload keeps its code's addresses, up to 64 of them
        # (CodeReservations::kMaxReservations); the next one retires every
        # trace cache and frees them all, and plugins load where others
        # were again. The program's thread now steps, and unwinds right.
        proc = self.start()
        self.collector.wait_for_process(proc.pid, lambda p: p["connected"])
        libraries = [FPFRAME, SPFRAME] * 40
        bases = [self.cycle(proc, library) for library in libraries]
        self.assertEqual(len(set(bases[:65])), 65, "an unload's addresses were taken before 64 unloads")
        reused = [i for i in range(65, len(bases))
                  if any(bases[j] == bases[i] and libraries[j] != libraries[i] for j in range(i))]
        self.assertTrue(reused, f"no plugin was loaded where the other one had been: {bases}")
        last = libraries[reused[-1]]
        self.command(proc, f"o {last}")
        self.command(proc, f"a {self.ALLOCS} {self.BYTES}")
        self.check_frames(proc.pid, last)
        finish_interactive(self, proc)


if __name__ == "__main__":
    unittest.main()
