"""The shim in an application image older than glibc 2.34: Debian 11's
programs (glibc 2.31), run under it in a chroot of a Debian 11 root
(scripts/old-glibc-root.sh; scripts/test.sh makes it and passes it as
HEAPWATCH_OLD_GLIBC_ROOT; without it these tests skip).

Before 2.34 glibc kept pthread_* in libpthread.so.0 and dl* in libdl.so.2.
The shim names neither as DT_NEEDED (dl_functions.h) and references what it
calls of theirs weakly, so each program here loads some of them or none:
  * sort links libpthread, not libdl: the shim reaches dlsym through libdl
    loaded by hand, and profiles it;
  * perl links both;
  * bash links libdl, not libpthread, and echo neither: no sender thread to
    be had, so they run unprofiled and say why, once for the process tree;
  * libpthread.so.0 preloaded before the shim makes bash profiled."""
import ctypes
import os
import shutil
import subprocess
import tempfile
import unittest

from test_shim_support import SHIM, WireReceiver, child_env, wait_until

ROOT = os.environ.get("HEAPWATCH_OLD_GLIBC_ROOT")
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18  # <sched.h>, <sys/mount.h>
SAID = ("heapwatch: profiling disabled: pthread_create is in libpthread.so.0 with glibc 2.31, "
        "and the program does not load it (to profile it, preload libpthread.so.0 before the "
        "shim)\n")


@unittest.skipUnless(ROOT, "HEAPWATCH_OLD_GLIBC_ROOT not set (scripts/test.sh: HEAPWATCH_TEST_OLD_GLIBC=1)")
class OldGlibcTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("chroot needs root (scripts/test.sh runs the suite as root)")
        self.assertTrue(SHIM and os.path.exists(SHIM), "HEAPWATCH_SHIM not set; run through ctest")
        self.dir = tempfile.mkdtemp(prefix="hw-old-glibc-", dir=os.path.join(ROOT, "tmp"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        shutil.copy(SHIM, self.dir)
        self.inside = "/" + os.path.relpath(self.dir, ROOT)  # the same folder, seen from the chroot
        self.shim = os.path.join(self.inside, os.path.basename(SHIM))
        self.rx = WireReceiver(os.path.join(self.dir, "hw.sock"))
        self.addCleanup(self.rx.stop)

    def run_in_root(self, cmd, preload=None, stdin="", **env):
        """cmd in the chroot, without the shim unless `preload`; at R = 1."""
        extra = {"HEAPWATCH_SOCKET": os.path.join(self.inside, "hw.sock"), "HEAPWATCH_SAMPLE_BYTES": "1",
                 "PATH": "/usr/bin:/bin", **env}

        def enter():
            # A mount namespace of the child's own, for the /proc that a
            # container has (the shim reads /proc/self/exe and the maps):
            # gone with the process, nothing to unmount.
            libc = ctypes.CDLL(None, use_errno=True)
            if (libc.unshare(CLONE_NEWNS) != 0 or
                    libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0 or
                    libc.mount(b"proc", os.path.join(ROOT, "proc").encode(), b"proc", 0, None) != 0):
                raise OSError(ctypes.get_errno(), "a mount namespace with /proc for the chroot")
            os.chroot(ROOT)
            os.chdir("/")
        return subprocess.run(cmd, env=child_env(extra, preload), input=stdin, capture_output=True,
                              text=True, timeout=120, preexec_fn=enter)

    def needed(self, path):
        out = subprocess.run(["readelf", "-d", os.path.join(ROOT, path.lstrip("/"))],
                             capture_output=True, text=True, check=True).stdout
        return {line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line}

    def profiled(self, cmd, preload, stdin=""):
        """Runs cmd with and without the shim: the same output and exit, and
        nothing on stderr; returns the process's closed connection."""
        base = self.run_in_root(cmd, stdin=stdin)
        self.assertEqual(base.returncode, 0, base.stderr)
        r = self.run_in_root(cmd, preload=preload, stdin=stdin)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, base.stdout, ""))
        conn = wait_until(lambda: [c for c in self.rx.snapshot() if c.closed and c.hello and
                                   c.hello["ppid"] == os.getpid()],
                          what="the program's connection closed")[0]
        self.assertEqual(conn.errors, [])
        self.assertGreater(len(conn.alloc_sizes), 0)
        self.assertGreater(conn.stats["sampled_allocs"], 0)
        self.assertEqual(conn.stats["unwind_failures"], 0)
        # Whole stacks, through the image's own libunwind.
        self.assertGreaterEqual(max(len(pcs) for pcs in conn.stacks.values()), 4)
        return conn

    def loaded(self, conn):
        """The sonames of the objects in the module map, which names each by
        its file (/proc/self/maps: libdl-2.31.so for libdl.so.2)."""
        files = {os.path.basename(m["path"]) for m in conn.modules}
        lib = os.path.join(ROOT, "lib/x86_64-linux-gnu")
        return files | {name for name in os.listdir(lib)
                        if os.path.basename(os.path.realpath(os.path.join(lib, name))) in files}

    def test_a_program_that_loads_libpthread_but_not_libdl_is_profiled(self):
        self.assertEqual(self.needed("/usr/bin/sort"), {"libpthread.so.0", "libc.so.6"})
        lines = "".join(f"{(i * 7919) % 100003}\n" for i in range(20000))
        conn = self.profiled(["sort", "-n", "-S", "4M"], self.shim, stdin=lines)
        self.assertIn("sort", conn.exe)
        # Loaded by the shim, for dlsym: the program does not name it.
        self.assertIn("libdl.so.2", self.loaded(conn))
        self.assertIn("libunwind.so.8", self.loaded(conn))

    def test_a_program_that_loads_both_is_profiled(self):
        self.assertLessEqual({"libpthread.so.0", "libdl.so.2"}, self.needed("/usr/bin/perl"))
        script = "my @a = map { 'x' x 100000 } 1 .. 40; print scalar(@a), qq(\\n)"
        conn = self.profiled(["perl", "-e", script], self.shim)
        self.assertIn("perl", conn.exe)

    def test_programs_without_libpthread_run_unprofiled_and_say_why_once(self):
        self.assertNotIn("libpthread.so.0", self.needed("/bin/bash"))
        self.assertNotIn("libpthread.so.0", self.needed("/bin/echo"))
        cmd = ["bash", "-c", "x=$(head -c 2000000 /dev/zero | tr '\\0' x); echo ${#x}; /bin/echo done"]
        base = self.run_in_root(cmd)
        self.assertEqual((base.returncode, base.stdout), (0, "2000000\ndone\n"), base.stderr)
        r = self.run_in_root(cmd, preload=self.shim)
        # Said by bash; echo, which it execs, inherits HEAPWATCH_SAID.
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, base.stdout, SAID))
        self.rx.stop()
        self.assertEqual(self.rx.snapshot(), [])

    def test_libpthread_preloaded_before_the_shim_makes_such_a_program_profiled(self):
        cmd = ["bash", "-c", "x=$(printf '%2000000s' ''); echo ${#x}"]
        conn = self.profiled(cmd, f"libpthread.so.0 {self.shim}")
        self.assertIn("bash", conn.exe)
        self.assertIn("libpthread.so.0", self.loaded(conn))


if __name__ == "__main__":
    unittest.main()
