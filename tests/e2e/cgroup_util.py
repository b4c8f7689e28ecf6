"""A real memory-limited cgroup for end-to-end tests and benchmarks.

Creates /sys/fs/cgroup/memory/heapwatch-test-XXX (cgroup v1) or
/sys/fs/cgroup/heapwatch-test-XXX (v2), sets the limit, starts a command inside
it through a small `sh` wrapper (the shell moves itself into the cgroup, then
execs the program, so the program's first allocation is already accounted),
and removes the cgroup afterwards. Standard library only.
"""
import os
import subprocess
import time
import uuid

V1_ROOT = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


class MemoryCgroup:
    def __init__(self, limit_bytes, prefix="heapwatch-test"):
        self.limit = limit_bytes
        name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.version = 1 if os.path.isfile(os.path.join(V1_ROOT, "memory.limit_in_bytes")) else 2
        self.path = os.path.join(V1_ROOT if self.version == 1 else V2_ROOT, name)
        os.mkdir(self.path)
        try:
            if self.version == 1:
                _write(os.path.join(self.path, "memory.limit_in_bytes"), str(limit_bytes))
                # No swap: the kernel must kill, not page out (when swap accounting exists).
                for name, value in (("memory.swappiness", "0"), ("memory.memsw.limit_in_bytes", str(limit_bytes))):
                    try:
                        _write(os.path.join(self.path, name), value)
                    except OSError:
                        pass
            else:
                _write(os.path.join(self.path, "memory.max"), str(limit_bytes))
                try:
                    _write(os.path.join(self.path, "memory.swap.max"), "0")
                except OSError:
                    pass
        except OSError:
            self.remove()
            raise

    @staticmethod
    def unavailable_reason():
        """None when a memory cgroup can be made here, else why not."""
        if os.geteuid() != 0:
            return "needs root to create a memory cgroup (run the e2e tests as root, e.g. in CI's container)"
        if os.path.isfile(os.path.join(V1_ROOT, "memory.limit_in_bytes")):
            root = V1_ROOT
        elif os.path.isfile(os.path.join(V2_ROOT, "cgroup.controllers")):
            root = V2_ROOT
            try:
                if "memory" not in _read(os.path.join(V2_ROOT, "cgroup.subtree_control")).split():
                    return "cgroup v2 without the memory controller enabled for children of " + V2_ROOT
            except OSError as e:
                return f"cannot read {V2_ROOT}/cgroup.subtree_control: {e}"
        else:
            return "no memory cgroup hierarchy at /sys/fs/cgroup (neither v1 nor v2)"
        probe = os.path.join(root, f"heapwatch-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
            os.rmdir(probe)
        except OSError as e:
            return f"cannot create a cgroup under {root} ({e}); a read-only cgroupfs or no delegation"
        return None

    def popen(self, cmd, env=None, **kw):
        """Starts cmd inside the cgroup. `env` applies to cmd only, not the wrapper shell."""
        procs = os.path.join(self.path, "cgroup.procs")
        wrapper = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs]
        if env:
            wrapper += ["/usr/bin/env"] + [f"{k}={v}" for k, v in env.items()]
        return subprocess.Popen(wrapper + list(cmd), **kw)

    def usage(self):
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int(_read(os.path.join(self.path, name)))

    def oom_kills(self):
        """Kernel OOM kills inside this cgroup so far (None when not reported)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in _read(os.path.join(self.path, name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return None

    def remove(self, timeout=10.0):
        """Kills what is left inside and removes the cgroup."""
        deadline = time.monotonic() + timeout
        while os.path.isdir(self.path):
            try:
                for pid in _read(os.path.join(self.path, "cgroup.procs")).split():
                    try:
                        os.kill(int(pid), 9)
                    except ProcessLookupError:
                        pass
                os.rmdir(self.path)
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
