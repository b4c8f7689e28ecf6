"""Module maps after dlopen/dlclose: a program under the shim loads a plugin,
allocates from it and keeps the blocks; the collector must learn the new
module and name the plugin's function. Then the plugin is freed and closed,
another is loaded (often at the same address), and the collector must see
the map change again: the first plugin gone, the second one named."""
import os
import unittest

from harness import CollectorTestCase, find_path, wait_until, walk_tree
from test_shim_support import program, start_interactive

ALPHA = program("libshim_plugin_alpha.so")
BETA = program("libshim_plugin_beta.so")
BLOCKS, BLOCK_BYTES = 32, 65536


class ModuleMapTest(CollectorTestCase):
    def start(self):
        return start_interactive(self, "shim_dlopen", SAMPLE_BYTES=1)

    def command(self, proc, line):
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline().strip()
        self.assertFalse(answer.startswith("error") or not answer, f"{line!r}: {answer!r}")
        return answer

    def profile(self, pid):
        return self.collector.get_json(f"/api/v1/profile?pid={pid}&type=inuse_space")

    def wait_for_plugin(self, pid, namespace, library):
        """The plugin's Hoard(), named, in the plugin's module, holding the blocks."""
        def named():
            tree = self.profile(pid)
            found = find_path(tree["root"], lambda n: n["name"].startswith(namespace + "::Hoard"))
            return (tree, found) if found else None
        tree, (node, path) = wait_until(named, 30, what=f"{namespace}::Hoard in the profile")
        self.assertEqual(os.path.basename(node["module"]), os.path.basename(library), node)
        self.assertGreaterEqual(node["value"], BLOCKS * BLOCK_BYTES, node)
        names = [n["name"] for n in path]
        self.assertIn("main", names)  # the path runs through the program into the plugin
        return tree

    def test_dlopen_and_dlclose_reach_the_collector(self):
        proc = self.start()
        pid = proc.pid
        base = self.collector.wait_for_process(pid, lambda p: p["connected"])["modules"]

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
        proc.stdin.write("q\n")
        proc.stdin.flush()
        self.assertEqual(proc.wait(30), 0)


if __name__ == "__main__":
    unittest.main()
