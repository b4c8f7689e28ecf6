"""Kubernetes manifests, alert rules and the container image build (issue 9).

Runs offline (npm's registry aside, for `npm ci` in tests/k8s):
- the Node checks in tests/k8s: every kustomization rendered with
  `kubectl kustomize`, validated against the Kubernetes and Prometheus
  Operator schemas, and the injected pieces checked for consistency;
- `promtool check rules` and `promtool test rules` on k8s/prometheus;
- the Dockerfile, which cannot be built here (no container engine): the files
  it copies exist, the copied sources alone configure, its runtime packages
  exist in Debian 12 and provide every library the installed binaries load;
- the shim's directory, which the init container copies into the
  application's pod: it needs nothing beyond glibc, and the init container's
  copy, preloaded into heapwatch-demo in an image that has only glibc and the
  demo's own libraries (a chroot, so as root), loads and profiles.

Run alone with `ctest -R e2e_k8s -V`, or from tests/e2e with
HEAPWATCH_SOURCE_DIR (and HEAPWATCH_BUILD_DIR for the install checks) set.
"""
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

from test_shim_support import WireReceiver

SOURCE_DIR = os.environ.get("HEAPWATCH_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("HEAPWATCH_BUILD_DIR", "")
K8S_TESTS = os.path.join(SOURCE_DIR, "tests", "k8s")
RULES_DIR = os.path.join(SOURCE_DIR, "k8s", "prometheus")
DOCKERFILE = os.path.join(SOURCE_DIR, "Dockerfile")
IMAGE_PREFIX = "/opt/heapwatch"
COMPONENT = os.path.join(SOURCE_DIR, "k8s", "components", "heapwatch")
# The shim's own directory under the install prefix (preload/CMakeLists.txt):
# libheapwatch.so and the libraries it loads from beside itself.
SHIM_DIR = "lib/heapwatch"

# What an LD_PRELOADed library may need in any glibc-based application image.
GLIBC_SONAMES = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0",
                 "librt.so.1", "ld-linux-x86-64.so.2"}


def read(path, mode="r"):
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        return f.read()


def run(cmd, cwd=None, timeout=600, env=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def require_tool(test, tool):
    if shutil.which(tool) is None:
        test.fail(f"{tool} is not installed (scripts/install-deps.sh installs it)")


# ---- Dockerfile parsing -------------------------------------------------------

def dockerfile_instructions():
    """(stage index, instruction, arguments) with continuations joined."""
    text = read(DOCKERFILE)
    text = re.sub(r"\\\n", " ", text)
    stage = -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        yield stage, word, rest.strip()


def copy_instructions():
    """[(from_stage or None, [sources], dest)] of every COPY."""
    copies = []
    for _, word, rest in dockerfile_instructions():
        if word != "COPY":
            continue
        args = shlex.split(rest)
        source_stage = None
        while args and args[0].startswith("--"):
            flag = args.pop(0)
            if flag.startswith("--from="):
                source_stage = flag.split("=", 1)[1]
        copies.append((source_stage, args[:-1], args[-1]))
    return copies


def runtime_packages():
    """Packages the last stage installs with apt-get."""
    last = max(stage for stage, _, _ in dockerfile_instructions())
    pkgs = []
    for stage, word, rest in dockerfile_instructions():
        if stage != last or word != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = command.split()
            if words[:2] == ["apt-get", "install"]:
                pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


def cmake_definitions():
    """The -D options of the Dockerfile's `cmake -S` configure command."""
    for _, word, rest in dockerfile_instructions():
        if word == "RUN" and "cmake -S" in rest:
            configure = rest.split("&&")[0]
            return [w for w in shlex.split(configure) if w.startswith("-D")]
    raise AssertionError("the Dockerfile has no `cmake -S` configure step")


def dockerignore_patterns():
    path = os.path.join(SOURCE_DIR, ".dockerignore")
    if not os.path.exists(path):
        return []
    return [l.strip() for l in read(path).splitlines()
            if l.strip() and not l.startswith("#")]


def ignored(rel, patterns):
    import fnmatch
    parts = rel.split("/")
    for p in patterns:
        p = p.rstrip("/")
        if p.startswith("**/"):
            if any(fnmatch.fnmatch(part, p[3:]) for part in parts):
                return True
        elif fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p):
            return True
    return False


# ---- install tree -----------------------------------------------------------------

_install_dir = None


def install_tree(test):
    """`cmake --install` of the test build into a temporary prefix, once."""
    global _install_dir
    if _install_dir:
        return _install_dir
    if not BUILD_DIR or not os.path.exists(os.path.join(BUILD_DIR, "cmake_install.cmake")):
        test.skipTest("HEAPWATCH_BUILD_DIR is not a configured build (run through ctest)")
    prefix = tempfile.mkdtemp(prefix="heapwatch-k8s-install-")
    result = run(["cmake", "--install", BUILD_DIR, "--prefix", prefix])
    test.assertEqual(result.returncode, 0, result.stdout + result.stderr)
    _install_dir = prefix
    return prefix


def elf_files(root):
    for path in glob.glob(os.path.join(root, "**", "*"), recursive=True):
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    yield path


def needed(path):
    result = run(["readelf", "-d", path])
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", result.stdout)


class ManifestTest(unittest.TestCase):
    def test_manifests_render_validate_and_agree(self):
        require_tool(self, "node")
        require_tool(self, "npm")
        require_tool(self, "kubectl")
        lock = read(os.path.join(K8S_TESTS, "package-lock.json"), "rb")
        stamp = os.path.join(K8S_TESTS, "node_modules", ".heapwatch-lock-sha256")
        digest = hashlib.sha256(lock).hexdigest()
        if not os.path.exists(stamp) or read(stamp) != digest:
            result = run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                         cwd=K8S_TESTS)
            self.assertEqual(result.returncode, 0, "npm ci failed:\n" + result.stderr[-3000:])
            with open(stamp, "w") as f:
                f.write(digest)
        result = run(["node", "--test", "--test-reporter=spec"], cwd=K8S_TESTS)
        print(result.stdout[-6000:])
        self.assertEqual(result.returncode, 0,
                         "manifest checks failed:\n" + result.stdout[-12000:] + result.stderr[-3000:])


class RulesTest(unittest.TestCase):
    def test_promtool_accepts_the_rules(self):
        require_tool(self, "promtool")
        result = run(["promtool", "check", "rules", "heapwatch-rules.yaml"], cwd=RULES_DIR)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("4 rules found", result.stdout)

    def test_alerts_fire_and_stay_quiet_as_specified(self):
        require_tool(self, "promtool")
        result = run(["promtool", "test", "rules", "heapwatch-rules.test.yaml"], cwd=RULES_DIR)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class DockerfileTest(unittest.TestCase):
    def test_every_copied_source_exists_in_the_context(self):
        patterns = dockerignore_patterns()
        context_copies = [c for c in copy_instructions() if c[0] is None]
        self.assertTrue(context_copies, "the Dockerfile copies nothing from the repository")
        for _, sources, _ in context_copies:
            for source in sources:
                self.assertTrue(os.path.exists(os.path.join(SOURCE_DIR, source)),
                                f"COPY {source}: not in the repository")
                self.assertFalse(ignored(source.rstrip("/"), patterns),
                                 f"COPY {source}: excluded by .dockerignore")

    def test_copied_sources_alone_configure(self):
        """The build stage's context (only what it COPYs) is a whole project."""
        require_tool(self, "cmake")
        context = tempfile.mkdtemp(prefix="heapwatch-docker-context-")
        try:
            for source_stage, sources, dest in copy_instructions():
                if source_stage is not None:
                    continue
                for source in sources:
                    src = os.path.join(SOURCE_DIR, source)
                    target = os.path.join(context, dest if dest not in ("./", ".") else os.path.basename(source))
                    os.makedirs(os.path.dirname(target.rstrip("/")), exist_ok=True)
                    if os.path.isdir(src):
                        shutil.copytree(src, target, dirs_exist_ok=True,
                                        ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
                    else:
                        shutil.copy2(src, target)
            build = os.path.join(context, "_build")
            result = run(["cmake", "-S", context, "-B", build] + cmake_definitions(), timeout=300)
            self.assertEqual(result.returncode, 0,
                             "the Dockerfile's sources do not configure:\n"
                             + result.stdout[-3000:] + result.stderr[-3000:])
        finally:
            shutil.rmtree(context, ignore_errors=True)

    def test_runtime_packages_exist_in_debian(self):
        require_tool(self, "apt-cache")
        if not glob.glob("/var/lib/apt/lists/*_Packages*"):
            self.skipTest("apt has no package lists (run apt-get update): cannot look up packages")
        pkgs = runtime_packages()
        self.assertTrue(pkgs, "the runtime stage installs no packages")
        for pkg in pkgs:
            result = run(["apt-cache", "show", "--no-all-versions", pkg])
            self.assertEqual(result.returncode, 0, f"{pkg}: not a Debian package ({result.stderr.strip()})")
            self.assertIn(f"Package: {pkg}", result.stdout)

    def test_install_tree_has_what_the_manifests_use(self):
        prefix = install_tree(self)
        copies = [c for c in copy_instructions() if c[0] == "build"]
        self.assertEqual([(s, d) for _, s, d in copies], [([IMAGE_PREFIX], IMAGE_PREFIX)])
        for rel in ["bin/heapwatchd", "bin/heapwatch-demo", f"{SHIM_DIR}/libheapwatch.so",
                    "share/heapwatch/ui/index.html"]:
            self.assertTrue(os.path.exists(os.path.join(prefix, rel)),
                            f"{IMAGE_PREFIX}/{rel} would be missing from the image")
        # Every absolute image path the manifests run or copy.
        paths = set()
        for root, _, files in os.walk(os.path.join(SOURCE_DIR, "k8s")):
            for name in files:
                if name.endswith(".yaml"):
                    text = read(os.path.join(root, name))
                    paths |= set(re.findall(r"(/opt/heapwatch/(?:bin|lib)/[\w./-]*[\w-])", text))
        self.assertTrue(paths)
        for p in sorted(paths):
            self.assertTrue(os.path.exists(os.path.join(prefix, p[len(IMAGE_PREFIX) + 1:])),
                            f"the manifests use {p}, which the image does not have")

    def test_examples_run_the_demo_with_arguments_it_accepts(self):
        demo = os.environ.get("HEAPWATCH_DEMO", "")
        if not demo or not os.path.exists(demo):
            self.skipTest("HEAPWATCH_DEMO is not built (run through ctest)")
        commands = []
        for path in glob.glob(os.path.join(SOURCE_DIR, "k8s", "examples", "*", "*.yaml")):
            text = read(path)
            block = re.findall(r"command:\s*\n((?:\s+- .*\n)+)", text)
            inline = re.findall(r"command: (\[.*heapwatch-demo.*\])", text)
            for b in block:
                commands.append([shlex.split(l.strip()[2:])[0] for l in b.splitlines()])
            for i in inline:
                commands.append([shlex.split(w.strip())[0] for w in i.strip("[]").split(",")])
        commands = [c for c in commands if c[0].endswith("/heapwatch-demo")]
        self.assertGreaterEqual(len(commands), 2, "no example runs heapwatch-demo")
        for command in commands:
            result = run([demo] + command[1:] + ["--seconds", "0.3"], timeout=30)
            self.assertEqual(result.returncode, 0,
                             f"heapwatch-demo refuses {command[1:]}: {result.stderr}")

    def test_runtime_packages_provide_every_library(self):
        require_tool(self, "dpkg-query")
        prefix = install_tree(self)
        base = base_image_packages()
        allowed = set(runtime_packages()) | base
        # The shim's directory brings its own libraries and is loaded only in
        # the application's pod (the ShimTest below).
        shim_dir = os.path.join(prefix, SHIM_DIR)
        for path in elf_files(prefix):
            if os.path.dirname(path) == shim_dir:
                continue
            result = run(["ldd", path])
            self.assertEqual(result.returncode, 0, f"ldd {path}: {result.stderr}")
            for lib in re.findall(r"=> (/\S+)", result.stdout):
                owner = run(["dpkg-query", "-S", os.path.realpath(lib)])
                if owner.returncode != 0:
                    owner = run(["dpkg-query", "-S", lib])
                self.assertEqual(owner.returncode, 0, f"{path}: {lib} belongs to no package")
                pkg = owner.stdout.split(":")[0]
                self.assertIn(pkg, allowed,
                              f"{os.path.relpath(path, prefix)} loads {lib} from {pkg}, "
                              "which the runtime stage does not install")


def base_image_packages():
    """Packages a debian:bookworm-slim image has: priority required, and apt."""
    result = run(["dpkg-query", "-W", "-f", "${Package} ${Priority}\n"])
    pkgs = {line.split()[0].split(":")[0] for line in result.stdout.splitlines()
            if line.endswith(" required")}
    deps = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                "--installed", "apt"])
    pkgs |= {l.strip().split(":")[0] for l in deps.stdout.splitlines()
             if l and not l.startswith(" ") and not l.startswith("<")}
    return pkgs


# ---- the shim in an application's pod -------------------------------------------

def component_value(name, pattern, what):
    """The one match of pattern in the component's file `name`."""
    found = re.findall(pattern, read(os.path.join(COMPONENT, name)), re.M)
    if len(found) != 1:
        raise AssertionError(f"k8s/components/heapwatch/{name}: expected one {what}, found {found}")
    return found[0]


def shim_injection():
    """What the component does with the shim, from its sources (tests/k8s
    checks that the rendered pieces agree): the init container's command and
    its mount of the heapwatch-shim volume; the application's mount of that
    volume, its LD_PRELOAD and HEAPWATCH_SOCKET."""
    mount = r"name: heapwatch-shim\s*\n\s*mountPath: (\S+)\s*$"
    return dict(
        command=json.loads(component_value("pod-patch.yaml", r"^\s*command: (\[.*\])\s*$",
                                           "init container command")),
        init_mount=component_value("pod-patch.yaml", mount, "init container mount"),
        app_mount=component_value("injection.yaml", mount, "application mount"),
        preload=component_value("injection.yaml", r"^\s*preload: (\S+)\s*$", "preload"),
        socket=component_value("injection.yaml", r"^\s*socket: (\S+)\s*$", "socket"))


def on_host(path, mounts):
    """The host path of a container path, given {container dir: host dir}."""
    for inside, outside in sorted(mounts.items(), key=lambda m: -len(m[0])):
        inside = inside.rstrip("/")
        if path == inside or path.startswith(inside + "/"):
            return outside + path[len(inside):]
    return None


def application_image(root, program):
    """A minimal application image in root: glibc, program (as /app/<name>)
    and the libraries ldd says it loads, as regular files. Returns the
    program's path inside the image."""
    listing = run(["ldd", program])
    if listing.returncode != 0:
        raise AssertionError(f"ldd {program}: {listing.stderr}")
    libs = re.findall(r"(/\S+) \(0x", listing.stdout)
    libc = next(l for l in libs if os.path.basename(l) == "libc.so.6")
    glibc = [os.path.join(os.path.dirname(libc), soname) for soname in sorted(GLIBC_SONAMES)]
    inside = "/app/" + os.path.basename(program)
    for src, dest in [(program, inside)] + [(l, l) for l in libs + glibc if os.path.exists(l)]:
        os.makedirs(os.path.dirname(root + dest), exist_ok=True)
        shutil.copy(os.path.realpath(src), root + dest)
    return inside


def run_in(root, cmd, env, timeout=60):
    """cmd with root as its root directory (chroot(2): needs root)."""
    def enter():
        os.chroot(root)
        os.chdir("/")
    return subprocess.run(cmd, env=env, preexec_fn=enter, capture_output=True, text=True,
                          timeout=timeout)


def shim_dynamic_tags(path):
    result = run(["readelf", "-d", path])
    return re.findall(r"\((RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", result.stdout)


class ShimTest(unittest.TestCase):
    """The shim as the init container hands it to an application.

    Application images need not have libunwind.so.8 or liblzma.so.5, so the
    shim's directory carries them, and the shim finds them beside itself. It
    loads libunwind with dlopen: a preload whose dependencies ld.so cannot
    find or load (a glibc older than theirs) stops the application from
    starting, and a dlopen that fails only leaves the shim off.
    """

    def test_shim_directory_needs_nothing_beyond_glibc(self):
        prefix = install_tree(self)
        shim_dir = os.path.join(prefix, SHIM_DIR)
        shipped = set(os.listdir(shim_dir))
        self.assertIn("libheapwatch.so", shipped)
        for name in shipped:
            self.assertFalse(os.path.islink(os.path.join(shim_dir, name)),
                             f"{SHIM_DIR}/{name} is a symbolic link; ship regular files")
        # DT_RPATH, not DT_RUNPATH: a runpath serves only the shim's own
        # dependencies, and libunwind.so.8, which has none, must find
        # liblzma.so.5 there too.
        self.assertEqual(shim_dynamic_tags(os.path.join(shim_dir, "libheapwatch.so")),
                         [("RPATH", "$ORIGIN")])
        # The shim's own dependencies, and libunwind.so.8's, which it dlopens.
        self.assertNotIn("libunwind.so.8", needed(os.path.join(shim_dir, "libheapwatch.so")))
        todo, seen = ["libheapwatch.so", "libunwind.so.8"], set()
        while todo:
            name = todo.pop()
            seen.add(name)
            for dep in needed(os.path.join(shim_dir, name)):
                if dep in GLIBC_SONAMES:
                    continue
                self.assertIn(dep, shipped, f"{name} needs {dep}, which is not in {SHIM_DIR}/: "
                              "application images need not have it")
                if dep not in seen:
                    todo.append(dep)
        self.assertEqual(seen, shipped, "files in the shim's directory that it does not load")

    def test_shim_loads_and_profiles_in_an_image_with_only_glibc(self):
        """The init container's copy, preloaded into a program in an image
        that has glibc and the program's own libraries, and nothing else."""
        if os.geteuid() != 0:
            self.fail("needs root to chroot into the application image "
                      "(scripts/test.sh runs the suite as root)")
        demo = os.environ.get("HEAPWATCH_DEMO", "")
        if not demo or not os.path.exists(demo):
            self.skipTest("HEAPWATCH_DEMO is not built (run through ctest)")
        prefix = install_tree(self)
        pod = shim_injection()
        root = tempfile.mkdtemp(prefix="heapwatch-k8s-app-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        program = application_image(root, demo)
        strays = [os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**"), recursive=True)
                  if re.match(r"lib(unwind|lzma)", os.path.basename(p))]
        self.assertEqual(strays, [], "the application image must not have the shim's libraries")

        # The init container: the image's /opt/heapwatch is the install
        # prefix, its mount of the volume is the application's.
        volume = root + pod["app_mount"]
        os.makedirs(volume)
        mounts = {IMAGE_PREFIX: prefix, pod["init_mount"]: volume}
        command = [on_host(a, mounts) or a if a.startswith("/") else a for a in pod["command"]]
        for arg, host in zip(pod["command"], command):
            self.assertTrue(not arg.startswith("/") or host != arg,
                            f"the init container's {arg} is neither in the image's "
                            f"{IMAGE_PREFIX} nor in the volume")
        result = run(command)
        self.assertEqual(result.returncode, 0, f"{pod['command']}: {result.stderr}")
        self.assertEqual(sorted(os.listdir(volume)),
                         sorted(os.listdir(os.path.join(prefix, SHIM_DIR))),
                         "the init container does not copy the shim's whole directory")

        env = {"LD_PRELOAD": pod["preload"], "HEAPWATCH_SOCKET": pod["socket"],
               "HEAPWATCH_SAMPLE_BYTES": "4096"}
        args = ["--seconds", "1", "--rps", "400", "--leak-bytes", "1000"]

        # Control: the shim alone, without its libraries, finds no libunwind
        # here, which shows that the image does hide the build machine's. The
        # program runs all the same, unprofiled (before the shim loaded
        # libunwind with dlopen, it could not start: exit 127).
        alone = os.path.join(root, "shim-alone")
        os.makedirs(alone)
        shutil.copy(os.path.join(volume, "libheapwatch.so"), alone)
        result = run_in(root, [program] + args[:2],
                        dict(env, LD_PRELOAD="/shim-alone/libheapwatch.so"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.splitlines(),
                         ["heapwatch: cannot load libunwind.so.8; profiling disabled: "
                          "libunwind.so.8: cannot open shared object file: No such file or directory"])
        # With HEAPWATCH_UNWIND=fp it profiles on frame pointers alone.
        os.makedirs(os.path.dirname(root + pod["socket"]), exist_ok=True)
        receiver = WireReceiver(root + pod["socket"])
        self.addCleanup(receiver.stop)
        result = run_in(root, [program] + args,
                        dict(env, LD_PRELOAD="/shim-alone/libheapwatch.so", HEAPWATCH_UNWIND="fp"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.splitlines(),
                         ["heapwatch: cannot load libunwind.so.8; frame pointers only: "
                          "libunwind.so.8: cannot open shared object file: No such file or directory"])
        conn = receiver.wait_for(lambda cs: [c for c in cs if c.closed and c.stats],
                                 what="the program's connection (frame pointers only)")[0]
        self.assertEqual(conn.errors, [])
        self.assertGreater(conn.stats["sampled_allocs"], 10, conn.stats)
        self.assertFalse(any("libunwind" in m["path"] for m in conn.modules), conn.modules)
        receiver.stop()

        receiver = WireReceiver(root + pod["socket"])
        self.addCleanup(receiver.stop)
        result = run_in(root, [program] + args, env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")
        conn = receiver.wait_for(lambda cs: [c for c in cs if c.closed and c.stats],
                                 what="the program's connection")[0]
        self.assertEqual(conn.errors, [])
        # Every library of the shim's directory is loaded, from the copy.
        loaded = {os.path.basename(m["path"]): m["path"] for m in conn.modules}
        for name in os.listdir(volume):
            self.assertEqual(loaded.get(name), os.path.join(pod["app_mount"], name),
                             f"{name} is not loaded from the init container's copy: {loaded}")
        # And it profiles: samples with whole stacks from libunwind (the
        # demo's frames are several calls below malloc).
        self.assertGreater(conn.stats["sampled_allocs"], 10, conn.stats)
        self.assertEqual(conn.stats["unwind_failures"], 0, conn.stats)
        self.assertGreater(max(len(pcs) for pcs in conn.stacks.values()), 3)


if __name__ == "__main__":
    unittest.main()
