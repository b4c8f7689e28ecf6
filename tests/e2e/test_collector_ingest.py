"""Strict ingest and peer identity, against the real heapwatchd socket:
malformed streams close only their own connection with a counted reason while
a real shim connection keeps streaming; the pid is SO_PEERCRED's, not the
hello's; peers of other uids are refused unless allowed; a forked child is a
process of its own and exited processes stay listed."""
import os
import subprocess
import sys
import unittest

from harness import DEMO, Collector, CollectorTestCase, shim_env, wait_until
from test_collector_support import (ALLOC, FREE, MAX_FRAME_BYTES, STACK, T_EVENTS, T_STACK,
                                    FakeShim, events, frame, hello, ingest_errors, program,
                                    resync, stack)


def instances(collector, exe):
    return [p for p in collector.get_json("/api/v1/processes")["processes"] if p["exe"] == exe]


class CollectorIngestTest(CollectorTestCase):
    def test_malformed_streams_close_only_their_connection(self):
        demo = self.spawn([DEMO, "--threads", "2", "--rps", "200"], SAMPLE_BYTES=16384)
        self.collector.wait_for_process(demo.pid, lambda p: p["connected"] and p["counters"]["events"] > 0)

        # Data accepted before the bad frame stays: a hello, a stack and one
        # 1000-byte allocation (R = 1: weight 1), then garbage.
        kept = FakeShim(self.collector.socket_path)
        kept.send(hello(exe="/bin/accepted-then-garbage") + stack(11, [0x1000, 0x2000])
                  + events([(ALLOC, 0x7000, 1000, 11)]))
        wait_until(lambda: [p for p in instances(self.collector, "/bin/accepted-then-garbage")
                            if p["heap_bytes"] == 1000], what="accepted allocation applied")
        kept.send(b"\xde\xad\xbe\xef" * 16)

        ok_hello = hello(exe="/bin/bad-stream")
        cases = [
            ("bad_magic", hello(magic=0x12345678)),
            ("bad_version", hello(version=99)),
            ("frame_too_large", frame(T_EVENTS, b"", length=MAX_FRAME_BYTES + 1)),
            ("frame_too_large", b"GET / HTTP/1.1\r\nHost: heapwatch\r\n\r\n"),  # garbage
            ("unknown_type", ok_hello + frame(99, b"x" * 8)),
            ("hello_not_first", stack(5, [0x1000])),
            ("duplicate_hello", ok_hello + hello(exe="/bin/again")),
            ("bad_stack", ok_hello + frame(T_STACK, STACK.pack(5, 300, 0) + b"\0" * 8 * 300)),
            ("bad_events", ok_hello + frame(T_EVENTS, b"\x02\0\0\0\0\0\0\0" + b"\0" * 40)),
            ("bad_event_kind", ok_hello + stack(5, [0x1000]) + events([(7, 0x10, 1, 5)])),
            ("bad_length", ok_hello + frame(8, b"\0" * 10)),
        ]
        for reason, data in cases:
            with self.subTest(reason=reason):
                before = ingest_errors(self.collector)
                shim = FakeShim(self.collector.socket_path)
                shim.send(data)
                self.assertTrue(shim.closed_by_peer(), f"{reason}: connection left open")
                shim.close()
                after = wait_until(lambda: (lambda e: e if e.get(reason, 0) == before.get(reason, 0) + 1
                                            else None)(ingest_errors(self.collector)),
                                   what=f"{reason} counted")
                others = {k: v for k, v in after.items() if k != reason and v != before.get(k, 0)}
                self.assertEqual(others, {}, f"{reason}: other reasons counted too")

        # A frame cut short by the peer closing is a counted error too.
        before = ingest_errors(self.collector).get("truncated_frame", 0)
        shim = FakeShim(self.collector.socket_path)
        shim.send(ok_hello + stack(9, [0x1000, 0x2000])[:20])
        shim.close()
        wait_until(lambda: ingest_errors(self.collector).get("truncated_frame", 0) == before + 1,
                   what="truncated frame counted")

        self.assertTrue(kept.closed_by_peer(), "garbage after good frames closes the connection")
        kept.close()
        accepted = instances(self.collector, "/bin/accepted-then-garbage")
        self.assertEqual(len(accepted), 1)
        self.assertEqual(accepted[0]["heap_bytes"], 1000, "accepted data stays after the close")
        self.assertFalse(accepted[0]["connected"])

        # The real shim never noticed: still connected, still streaming.
        events_before = self.collector.process(demo.pid)["counters"]["events"]
        proc = self.collector.wait_for_process(
            demo.pid, lambda p: p["connected"] and p["counters"]["events"] > events_before)
        self.assertEqual(proc["counters"]["reconnects"], 0)
        self.assertEqual(proc["state"], "running")

    def test_pid_comes_from_so_peercred(self):
        shim = FakeShim(self.collector.socket_path)
        shim.send(hello(pid=4242, exe="/bin/liar") + stack(3, [0x1000])
                  + events([(ALLOC, 0x10, 4096, 3)]))
        liar = wait_until(lambda: instances(self.collector, "/bin/liar"), what="liar listed")[0]
        self.assertEqual(liar["pid"], os.getpid(), "recorded under its real pid")
        self.assertEqual(liar["uid"], os.getuid())
        self.assertIsNone(self.collector.process(4242) if os.getpid() != 4242 else None)
        with self.assertRaises(Exception):
            self.collector.get_json("/api/v1/profile?pid=4242")
        shim.close()

    def test_free_and_resync_through_the_socket(self):
        shim = FakeShim(self.collector.socket_path)
        shim.send(hello(exe="/bin/resync") + stack(3, [0x1000]) + stack(4, [0x2000])
                  + events([(ALLOC, 0x10, 1000, 3), (ALLOC, 0x20, 3000, 4), (FREE, 0x10, 0, 0)]))
        wait_until(lambda: instances(self.collector, "/bin/resync")[0]["heap_bytes"] == 3000,
                   what="alloc, alloc, free applied")
        # A resync replaces the live view whole.
        shim.send(resync(True) + events([(ALLOC, 0x30, 500, 3)]) + resync(False, count=1))
        p = wait_until(lambda: (lambda p: p if p["heap_bytes"] == 500 else None)(
            instances(self.collector, "/bin/resync")[0]), what="live view replaced by the resync")
        self.assertEqual(p["alloc_bytes"], 4000, "a resync adds nothing to the allocation totals")
        shim.close()


# A client run as another uid: connects, says hello with one allocation, and
# prints "closed" if the collector hangs up without reading on, else "open".
PEER_CLIENT = r"""
import os, socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
exe = b"/bin/other-uid"
h = struct.pack("<IHHIIQQII", 0x31505748, 1, len(exe), os.getpid(), 1, 1, time.time_ns(), 64, 0) + exe
st = struct.pack("<QII", 9, 1, 0) + struct.pack("<Q", 0x1000)
ev = struct.pack("<II", 1, 0) + struct.pack("<IIQQQQ", 1, 1, 0x10, 777, 9, time.time_ns())
fr = lambda t, p: struct.pack("<IHH", len(p), t, 0) + p
try:
    s.sendall(fr(1, h) + fr(4, st) + fr(5, ev))
    s.settimeout(3)
    print("closed" if s.recv(1) == b"" else "data")
except (BrokenPipeError, ConnectionResetError):
    print("closed")
except socket.timeout:
    print("open")
sys.stdout.flush()
"""


class CollectorPeerUidTest(unittest.TestCase):
    NOBODY = 65534

    def run_as_nobody(self, collector):
        # The socket's folder and the socket itself opened up so that only the
        # collector's uid check stands between the peer and ingest.
        os.chmod(collector.workdir, 0o755)
        os.chmod(collector.socket_path, 0o666)
        cmd = ["setpriv", f"--reuid={self.NOBODY}", f"--regid={self.NOBODY}", "--clear-groups",
               sys.executable, "-c", PEER_CLIENT, collector.socket_path]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def collector(self, *args):
        c = Collector(args=args).start()
        self.addCleanup(c.cleanup)
        return c

    def setUp(self):
        if os.getuid() != 0:
            self.skipTest("needs root to run a peer as another uid")

    def test_other_uid_refused_and_counted(self):
        c = self.collector()
        self.assertEqual(self.run_as_nobody(c), "closed")
        wait_until(lambda: ingest_errors(c).get("peer_refused") == 1, what="peer_refused counted")
        self.assertEqual(instances(c, "/bin/other-uid"), [], "nothing of the refused peer kept")

    def test_other_uid_allowed_by_flag(self):
        for allow in (str(self.NOBODY), "any"):
            with self.subTest(allow=allow):
                c = self.collector("--allow-uids", allow)
                self.assertEqual(self.run_as_nobody(c), "open")
                p = wait_until(lambda: instances(c, "/bin/other-uid"), what="peer listed")[0]
                self.assertEqual(p["uid"], self.NOBODY)
                self.assertEqual(p["heap_bytes"], 777)
                self.assertEqual(ingest_errors(c).get("peer_refused"), 0)


class CollectorHelloTimeoutTest(CollectorTestCase):
    collector_args = ("--hello-timeout", "0.5")

    def test_silent_connection_is_closed_and_counted_and_others_go_on(self):
        silent = FakeShim(self.collector.socket_path)
        self.addCleanup(silent.close)
        # One that says hello, late but in time, and keeps its connection.
        talker = FakeShim(self.collector.socket_path)
        self.addCleanup(talker.close)
        talker.send(hello(exe="/bin/talker"))
        self.assertTrue(silent.closed_by_peer(timeout=10), "the silent connection was not closed")
        self.assertEqual(ingest_errors(self.collector).get("hello_timeout"), 1)
        self.assertFalse(talker.closed_by_peer(timeout=1.5), "a connection that said hello was closed")
        talker.send(stack(1, [0x1234]) + events([(ALLOC, 0x9000, 64, 1)]))
        wait_until(lambda: [p for p in instances(self.collector, "/bin/talker")
                            if p["counters"]["events"] == 1 and p["connected"]],
                   timeout=10, what="the talker's event, still connected")


class CollectorForkTest(CollectorTestCase):
    collector_args = ("--poll-interval", "0.2")

    def test_forked_child_is_its_own_process_and_exited_stay_listed(self):
        parent_bytes, child_bytes = 3 << 20, 5 << 20
        proc = subprocess.Popen([program("collector_fork"), str(parent_bytes), str(child_bytes)],
                                env=shim_env(self.collector, SAMPLE_BYTES=65536),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._children.append(proc)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.stdin.close)
        self.assertEqual(proc.stdout.readline().split(), [b"parent", str(proc.pid).encode()])
        child_line = proc.stdout.readline().split()
        self.assertEqual(child_line[0], b"child")
        child_pid = int(child_line[1])
        self.assertNotEqual(child_pid, proc.pid)

        parent = self.collector.wait_for_process(proc.pid, lambda p: p["heap_bytes"] >= parent_bytes)
        child = self.collector.wait_for_process(child_pid,
                                                lambda p: p["heap_bytes"] >= parent_bytes + child_bytes)
        self.assertEqual(child["ppid"], proc.pid)
        self.assertNotEqual(child["start_time"], 0)
        self.assertLess(parent["heap_bytes"], parent_bytes + child_bytes,
                        "the child's block is not the parent's")

        def names(pid):
            tree = self.collector.get_json(f"/api/v1/profile?pid={pid}")
            return {n for n in ("ParentHoldsBlock", "ChildHoldsBlock") if find_in(tree["root"], n)}
        wait_until(lambda: names(child_pid) == {"ParentHoldsBlock", "ChildHoldsBlock"},
                   what="child holds its own and the inherited block")
        self.assertEqual(names(proc.pid), {"ParentHoldsBlock"})

        proc.stdin.write(b"c\n")
        proc.stdin.flush()
        gone = self.collector.wait_for_process(child_pid, lambda p: p["state"] == "exited")
        self.assertFalse(gone["connected"])
        self.assertEqual(self.collector.process(proc.pid)["state"], "running")
        proc.stdin.write(b"p\n")
        proc.stdin.flush()
        self.assertEqual(proc.wait(30), 0)
        self.collector.wait_for_process(proc.pid, lambda p: p["state"] == "exited")
        # Both stay listed, with their last heap and still profileable.
        listed = {p["pid"]: p for p in self.collector.get_json("/api/v1/processes")["processes"]}
        self.assertEqual(listed[child_pid]["state"], "exited")
        self.assertGreaterEqual(listed[child_pid]["heap_bytes"], parent_bytes + child_bytes)
        tree = self.collector.get_json(f"/api/v1/profile?pid={child_pid}")
        self.assertTrue(find_in(tree["root"], "ChildHoldsBlock"))


def find_in(node, text):
    if text in node.get("name", ""):
        return True
    return any(find_in(c, text) for c in node.get("children", []))


if __name__ == "__main__":
    unittest.main()
