"""The symbolizer through the collector: a program under the shim allocates
from an always_inline chain and from a dlopen'ed library; the profile must name
every frame with file:line, show the inlined frames in order, carry the names
into pprof, and mark frames of a binary replaced on disk as mismatched instead
of naming them from the wrong file."""
import os
import re
import shutil
import tempfile
import unittest

from harness import (PROGRAMS, SOURCE_DIR, Collector, CollectorTestCase, find_path, wait_until,
                     walk_tree)

APP = os.path.join(PROGRAMS, "hwsym_e2e_app")
APP_V2 = os.path.join(PROGRAMS, "hwsym_e2e_app_v2")
PLUGIN = os.path.join(PROGRAMS, "libhwsym_e2e_plugin.so")
SOURCES = os.path.join(SOURCE_DIR, "tests", "programs", "symbolizer")


def marker_line(source, marker):
    with open(os.path.join(SOURCES, source)) as f:
        for number, line in enumerate(f, 1):
            if "@site:" + marker in line:
                return number
    raise AssertionError(f"no @site:{marker} in {source}")


class SymbolizerTest(CollectorTestCase):
    def profile(self, pid, collector=None):
        return (collector or self.collector).get_json(f"/api/v1/profile?pid={pid}&type=inuse_space")

    def test_inlined_chain_and_dlopened_library_are_named(self):
        app = self.spawn([APP, "--plugin", PLUGIN, "--seconds", "60"], SAMPLE_BYTES=1)

        def named():
            tree = self.profile(app.pid)
            inner = find_path(tree["root"], lambda n: n["name"].startswith("InnerAlloc"))
            grow = find_path(tree["root"], lambda n: n["name"].startswith("plugin_e2e::Grow"))
            return (tree, inner, grow) if inner and grow else None

        tree, (inner, path), (grow, _) = wait_until(named, 30, what="named frames in the profile")

        # Outer -> Middle -> Inner, root first; the two inner ones inlined.
        names = [n["name"] for n in path]
        outer_at = next(i for i, n in enumerate(names) if n.startswith("OuterAlloc"))
        self.assertTrue(names[outer_at + 1].startswith("MiddleAlloc"), names)
        self.assertIs(inner, path[outer_at + 2])
        outer, middle = path[outer_at], path[outer_at + 1]
        self.assertFalse(outer.get("inlined", False))
        self.assertTrue(middle["inlined"])
        self.assertTrue(inner["inlined"])
        for node, marker in ((inner, "e2e-inner"), (middle, "e2e-middle"), (outer, "e2e-outer")):
            self.assertTrue(node["file"].endswith("e2e_app.cc"), node)
            self.assertEqual(node["line"], marker_line("e2e_app.cc", marker), node)
        self.assertTrue(inner["module"].endswith("hwsym_e2e_app"), inner)

        # The dlopen'ed library, loaded after the process started.
        self.assertTrue(grow["module"].endswith("libhwsym_e2e_plugin.so"), grow)
        self.assertTrue(grow["file"].endswith("e2e_plugin.cc"), grow)
        self.assertEqual(grow["line"], marker_line("e2e_plugin.cc", "e2e-plugin"))
        # Nearly all of the live heap is these two sites (64 blocks each).
        self.assertGreater(inner["value"] + grow["value"], 0.8 * tree["total"])

        # pprof carries the same names and files (its string table).
        pprof = self.collector.get_pprof(app.pid)
        for needle in (b"InnerAlloc", b"MiddleAlloc", b"OuterAlloc", b"plugin_e2e::Grow",
                       b"e2e_app.cc", b"e2e_plugin.cc"):
            self.assertIn(needle, pprof)

    def test_binary_replaced_on_disk_is_marked_not_misnamed(self):
        workdir = tempfile.mkdtemp(prefix="hwsym-e2e-")
        self.addCleanup(shutil.rmtree, workdir, True)
        app_path = os.path.join(workdir, "app")
        go = os.path.join(workdir, "go")
        shutil.copy(APP, app_path)
        # A collector that comes up only after the binary is replaced: had one
        # listened from the start, it could have opened the original file
        # (and then named the frames rightly, from it), or not, by timing.
        late = Collector()
        self.addCleanup(late.cleanup)
        app = self.spawn([app_path, "--wait-file", go, "--seconds", "60"], SAMPLE_BYTES=1,
                         socket_path=late.socket_path)
        wait_until(lambda: app_path in open(f"/proc/{app.pid}/maps").read(), 10,
                   what="the app running from its file")
        # Rebuilt and installed over the running binary (rename, as package
        # managers do): the path now names a file with another build-id.
        shutil.copy(APP_V2, app_path + ".new")
        os.rename(app_path + ".new", app_path)
        late.start()
        # The app's sender starts at its first sample, once it allocates.
        open(go, "w").close()
        late.wait_for_process(app.pid, lambda p: p["connected"])

        def mismatched():
            tree = self.profile(app.pid, late)
            marked = [n for n in walk_tree(tree["root"]) if n.get("mismatch")]
            return (tree, marked) if marked else None

        tree, marked = wait_until(mismatched, 30, what="frames marked as mismatched")
        for node in marked:
            self.assertTrue(node.get("unsymbolized"), node)
            self.assertRegex(node["name"], r"\+0x[0-9a-f]+$")
        names = [n["name"] for n in walk_tree(tree["root"])]
        for wrong in ("InnerAlloc", "MiddleAlloc", "OuterAlloc"):
            self.assertFalse([n for n in names if n.startswith(wrong)],
                             f"{wrong} named from the replaced file: {names}")


if __name__ == "__main__":
    unittest.main()
