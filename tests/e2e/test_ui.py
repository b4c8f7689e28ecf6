"""Browser tests of the web UI: real headless Chromium against a real heapwatchd
profiling the demo service (which leaks in SessionStore::RememberSession).

Opt-in, slow: runs only with HEAPWATCH_UI_TESTS=1 (`HEAPWATCH_UI_TESTS=1 ctest
-L ui`), and needs Debian's chromium and node. The browser side lives in
tests/ui/ui_test.mjs (playwright-core from tests/ui/package-lock.json, installed
with `npm ci` on first use; it never downloads a browser). Screenshots and the
measured figures (metrics.json) go to <build>/artifacts/ui/.
"""
import os
import shutil
import subprocess
import sys
import unittest

import harness

CHROMIUM = os.environ.get("HEAPWATCH_CHROMIUM", "/usr/bin/chromium")
UI_TESTS_DIR = os.path.join(harness.SOURCE_DIR, "tests", "ui")


def skip_reason():
    if os.environ.get("HEAPWATCH_UI_TESTS") != "1":
        return "browser tests are opt-in: set HEAPWATCH_UI_TESTS=1 (e.g. HEAPWATCH_UI_TESTS=1 ctest -L ui)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set HEAPWATCH_CHROMIUM)"
    if not shutil.which("node") or not shutil.which("npm"):
        return "node and npm are needed to drive Chromium (apt-get install nodejs npm)"
    return None


def ensure_node_modules():
    """Installs playwright-core from the lock file when missing (no browser download)."""
    marker = os.path.join(UI_TESTS_DIR, "node_modules", "playwright-core", "package.json")
    if os.path.exists(marker):
        return
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI_TESTS_DIR, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"npm ci in {UI_TESTS_DIR} failed:\n{proc.stdout}\n{proc.stderr}")


class UiTest(harness.CollectorTestCase):
    # A known limit, far above this machine's usage, so the timeline has a
    # limit line and (while usage grows) a prediction, with no usage alert.
    collector_args = ("--memory-limit", "64Gi")

    def setUp(self):
        reason = skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        ensure_node_modules()
        super().setUp()

    def run_browser(self, *args, timeout=420):
        artifacts = os.path.join(harness.BUILD_DIR or os.getcwd(), "artifacts", "ui")
        cmd = ["node", os.path.join(UI_TESTS_DIR, "ui_test.mjs"), "--artifacts", artifacts, *args]
        env = dict(os.environ, HEAPWATCH_CHROMIUM=CHROMIUM)
        proc = subprocess.run(cmd, cwd=UI_TESTS_DIR, env=env, capture_output=True, text=True,
                              timeout=timeout)
        sys.stdout.write(proc.stdout)
        sys.stdout.write(proc.stderr)
        self.assertEqual(proc.returncode, 0, f"browser checks failed (see above and {artifacts})")

    def test_ui_against_demo(self):
        # A process that has come and gone, for the picker's "exited" mark.
        # At R = 4 KiB: a process is listed once it samples, and in one
        # second at 200 requests the demo allocates ~1 MB, which at the
        # default 512 KiB left 1 run in ~8 without a sample (CI failed so).
        short = self.spawn([harness.DEMO, "--seconds", "1", "--rps", "200"], SAMPLE_BYTES=4096)
        short.wait(timeout=60)
        self.collector.wait_for_process(short.pid, lambda p: p["state"] == "exited")
        demo = self.spawn([harness.DEMO, "--leak-bytes", "4096", "--rps", "500"])
        self.collector.wait_for_process(demo.pid, lambda p: p["heap_bytes"] > 0)

        # A second collector with an access token, for the 401 prompt.
        token = "ui-test-token"
        token_file = os.path.join(self.collector.workdir, "token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        secured = harness.Collector(workdir=os.path.join(self.collector.workdir, "secured"),
                                    args=["--token-file", token_file], token=token)
        os.makedirs(secured.workdir, exist_ok=True)
        secured.start()
        self.addCleanup(secured.cleanup)

        self.run_browser("--url", self.collector.base_url, "--pid", str(demo.pid),
                         "--exited-pid", str(short.pid),
                         "--leak", "RememberSession",
                         "--token-url", secured.base_url, "--token", token)


if __name__ == "__main__":
    unittest.main()
