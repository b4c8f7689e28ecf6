"""Kubernetes manifests, alert rules and the container image build (issue 9).

Runs offline (npm's registry aside, for `npm ci` in tests/k8s):
- the Node checks in tests/k8s: every kustomization rendered with
  `kubectl kustomize`, validated against the Kubernetes and Prometheus
  Operator schemas, and the injected pieces checked for consistency;
- `promtool check rules` and `promtool test rules` on k8s/prometheus;
- the Dockerfile, which cannot be built here (no container engine): the files
  it copies exist, the copied sources alone configure, its runtime packages
  exist in Debian 12 and provide every library the installed binaries load,
  and the shim it hands to applications needs nothing beyond glibc.

Run alone with `ctest -R e2e_k8s -V`, or from tests/e2e with
HEAPWATCH_SOURCE_DIR (and HEAPWATCH_BUILD_DIR for the install checks) set.
"""
import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

SOURCE_DIR = os.environ.get("HEAPWATCH_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("HEAPWATCH_BUILD_DIR", "")
K8S_TESTS = os.path.join(SOURCE_DIR, "tests", "k8s")
RULES_DIR = os.path.join(SOURCE_DIR, "k8s", "prometheus")
DOCKERFILE = os.path.join(SOURCE_DIR, "Dockerfile")
IMAGE_PREFIX = "/opt/heapwatch"

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
        for rel in ["bin/heapwatchd", "bin/heapwatch-demo", "lib/libheapwatch.so",
                    "share/heapwatch/ui/index.html"]:
            self.assertTrue(os.path.exists(os.path.join(prefix, rel)),
                            f"{IMAGE_PREFIX}/{rel} would be missing from the image")
        # Every absolute image path the manifests run or copy.
        paths = set()
        for root, _, files in os.walk(os.path.join(SOURCE_DIR, "k8s")):
            for name in files:
                if name.endswith(".yaml"):
                    text = read(os.path.join(root, name))
                    paths |= set(re.findall(r"(/opt/heapwatch/(?:bin|lib)/[\w.-]+)", text))
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
        for path in elf_files(prefix):
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

    def test_shim_needs_nothing_beyond_glibc(self):
        """The init container copies libheapwatch.so alone into the app's pod.

        Any other library it needs must already be in the application's image,
        which heapwatch cannot assume: ld.so would then ignore the preload
        ("cannot be preloaded ... ignored") and the app would run unprofiled.
        """
        prefix = install_tree(self)
        shim = os.path.join(prefix, "lib", "libheapwatch.so")
        self.assertTrue(os.path.exists(shim))
        extra = sorted(set(needed(shim)) - GLIBC_SONAMES)
        self.assertEqual(extra, [],
                         f"libheapwatch.so needs {extra}, which application images "
                         "need not have. Link them into the shim statically (Debian's "
                         "libunwind.a is not PIC, so that needs another unwinder or a PIC "
                         "build), or ship them beside it with RUNPATH $ORIGIN and have the "
                         "init container copy them too")


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


if __name__ == "__main__":
    unittest.main()
