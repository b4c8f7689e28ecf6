// Offline checks of heapwatch's Kubernetes manifests (issue 9).
//
// Renders every kustomization under k8s/ (the examples and the
// PrometheusRule) and under tests/k8s/fixtures/ with `kubectl kustomize`,
// validates each object against the Kubernetes and Prometheus Operator
// schemas (kubernetes-models), and checks that the pieces the heapwatch
// component injects fit together: the application container keeps its place,
// both sides agree on the socket and the shim, volumes exist, ports and probe
// paths exist in the collector, the downward API names the application
// container, and the security context is what the comments claim.
//
//   cd tests/k8s && npm ci && node --test
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

import * as k8s from "kubernetes-models";
import * as monitoring from "@kubernetes-models/prometheus-operator";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");

// ---- rendering ---------------------------------------------------------------

function findKustomizations(root) {
  const found = [];
  for (const entry of fs.readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === "node_modules") continue;
    const dir = path.join(root, entry.name);
    const file = path.join(dir, "kustomization.yaml");
    if (fs.existsSync(file)) {
      const kind = YAML.parse(fs.readFileSync(file, "utf8")).kind ?? "Kustomization";
      if (kind === "Kustomization") found.push(dir);
    }
    found.push(...findKustomizations(dir));
  }
  return found;
}

function render(dir) {
  const out = execFileSync("kubectl", ["kustomize", dir], {
    encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"],
  });
  return YAML.parseAllDocuments(out).map((doc) => {
    // YAML 1.1 turns 0660 into 432: refuse any document the parser is unsure of.
    assert.equal(doc.errors.length, 0, `${dir}: ${doc.errors.join("; ")}`);
    return doc.toJS();
  });
}

const overlays = [
  ...findKustomizations(path.join(repo, "k8s")),
  ...findKustomizations(path.join(here, "fixtures")),
].sort();
const rendered = new Map(overlays.map((dir) => [path.relative(repo, dir), render(dir)]));

// ---- schema validation ---------------------------------------------------------

// The model class for apiVersion + kind, e.g. apps/v1 Deployment.
function modelFor(obj) {
  const [group, version] = obj.apiVersion.includes("/")
    ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  // Both packages export API groups in camelCase: monitoring.coreos.com is
  // monitoringCoreosCom.
  const key = group.replace(/[.-]([a-z])/g, (_, c) => c.toUpperCase());
  const byGroup = group === "" ? k8s[version] : (k8s[key] ?? monitoring[key])?.[version];
  return byGroup?.[obj.kind];
}

// ---- helpers --------------------------------------------------------------------

const HEAPWATCHD = "heapwatchd";
const envOf = (c) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));

// The volume mount of container c whose mountPath contains file, with the
// file's path relative to it.
function mountHolding(c, file) {
  const mounts = (c.volumeMounts ?? []).filter(
    (m) => file.startsWith(m.mountPath.replace(/\/$/, "") + "/"));
  assert.ok(mounts.length > 0, `${c.name}: no volume mount holds ${file}`);
  const m = mounts.sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  return { volume: m.name, rel: path.posix.relative(m.mountPath, file), mount: m };
}

function containerUid(pod, c) {
  return c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
}
function containerGid(pod, c) {
  return c.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup;
}

// HTTP paths the collector serves: from docs/api.md, and from the collector's
// router when it exists.
const apiDoc = fs.readFileSync(path.join(repo, "docs/api.md"), "utf8");
function collectorSources() {
  const dir = path.join(repo, "collector");
  if (!fs.existsSync(dir)) return "";
  return fs.readdirSync(dir).filter((f) => /\.(cc|h)$/.test(f) && !/_test\.cc$/.test(f))
    .map((f) => fs.readFileSync(path.join(dir, f), "utf8")).join("\n");
}
const collector = collectorSources();
const collectorRoutes = collector.includes('"/api/v1/');

// heapwatchd's flags, from its option table (collector/config.cc).
function collectorFlags() {
  const file = path.join(repo, "collector/config.cc");
  if (!fs.existsSync(file)) return null;
  const flags = [...fs.readFileSync(file, "utf8").matchAll(/^\s*\("([a-z][a-z0-9-]*)(?:,[a-z])?",/gm)]
    .map((m) => m[1]);
  return flags.length ? new Set(flags) : null;
}
const flags = collectorFlags();

// ---- tests --------------------------------------------------------------------------

test("there is something to check", () => {
  assert.ok(rendered.has("k8s/examples/demo"), "k8s/examples/demo must render");
  assert.ok(rendered.has("k8s/prometheus-operator"));
  assert.ok(rendered.size >= 4, [...rendered.keys()].join(", "));
});

for (const [overlay, objects] of rendered) {
  test(`${overlay}: every object is valid against its schema`, () => {
    assert.ok(objects.length > 0);
    for (const obj of objects) {
      const Model = modelFor(obj);
      assert.ok(Model, `${overlay}: no schema for ${obj.apiVersion} ${obj.kind}`);
      const name = `${obj.kind}/${obj.metadata?.name}`;
      try {
        new Model(obj).validate();
      } catch (e) {
        assert.fail(`${overlay} ${name}: ${e.message}`);
      }
      assert.ok(!/^(APP|REPLACED|from-)/.test(obj.metadata.name), `${overlay}: ${name} kept a placeholder name`);
      assert.ok(!JSON.stringify(obj).includes("REPLACED-BY"), `${overlay}: ${name} kept a placeholder`);
      assert.ok(!(obj.metadata.annotations ?? {})["config.kubernetes.io/local-config"],
        `${overlay}: local configuration ${name} was deployed`);
    }
  });

  for (const dep of objects.filter((o) => o.kind === "Deployment")) {
    const pod = dep.spec.template.spec;
    if (!pod.containers.some((c) => c.name === HEAPWATCHD)) continue;
    const where = `${overlay} Deployment/${dep.metadata.name}`;
    const sidecar = pod.containers.find((c) => c.name === HEAPWATCHD);
    const app = pod.containers[0];
    const init = (pod.initContainers ?? []).find((c) => c.name === "heapwatch-shim");

    test(`${where}: the application keeps containers[0] and gets the shim`, () => {
      assert.notEqual(app.name, HEAPWATCHD, "heapwatchd was put in front of the application");
      assert.equal(pod.containers.filter((c) => c.name === HEAPWATCHD).length, 1);
      assert.equal(pod.shareProcessNamespace, true);
      for (const c of pod.containers.slice(1)) {
        assert.equal(envOf(c).LD_PRELOAD, undefined, `${c.name} must not be preloaded`);
      }
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        const names = (c.env ?? []).map((e) => e.name);
        assert.deepEqual(names, [...new Set(names)], `${c.name}: duplicate env names`);
        const mounts = (c.volumeMounts ?? []).map((m) => m.mountPath);
        assert.deepEqual(mounts, [...new Set(mounts)], `${c.name}: duplicate mount paths`);
      }
    });

    test(`${where}: kept to amd64 nodes, the application's node selector kept`, () => {
      assert.equal(pod.nodeSelector?.["kubernetes.io/arch"], "amd64",
        "the image and the shim are x86-64: elsewhere the init container cannot run");
      if (overlay.includes("demo-other-uid")) {
        assert.equal(pod.nodeSelector["kubernetes.io/os"], "linux", "the application's own key was lost");
      }
    });

    test(`${where}: every mounted volume exists, once`, () => {
      const volumes = (pod.volumes ?? []).map((v) => v.name);
      assert.deepEqual(volumes, [...new Set(volumes)], "duplicate volume names");
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        for (const m of c.volumeMounts ?? []) {
          assert.ok(volumes.includes(m.name), `${c.name} mounts missing volume ${m.name}`);
        }
      }
      for (const v of ["heapwatch-shim", "heapwatch-socket", "heapwatch-data"]) {
        assert.ok(pod.volumes.find((x) => x.name === v)?.emptyDir, `${v} is an emptyDir`);
      }
    });

    test(`${where}: both sides use the same socket, in the shared volume`, () => {
      const appSocket = envOf(app).HEAPWATCH_SOCKET?.value;
      const ourSocket = envOf(sidecar).HEAPWATCH_SOCKET?.value;
      assert.ok(appSocket, "the application has no HEAPWATCH_SOCKET");
      assert.equal(appSocket, ourSocket);
      const a = mountHolding(app, appSocket);
      const s = mountHolding(sidecar, ourSocket);
      assert.equal(a.volume, s.volume, "socket directories are different volumes");
      assert.equal(a.rel, s.rel);
      assert.ok(!s.mount.readOnly, "heapwatchd must be able to create the socket");
      assert.ok(pod.volumes.find((v) => v.name === s.volume).emptyDir);
    });

    test(`${where}: LD_PRELOAD names the shim in the directory the init container copies`, () => {
      // ld.so's list: the shim first, then an allocator the application
      // preloads itself (tests/k8s/fixtures/own-preload).
      const [preload, ...others] = (envOf(app).LD_PRELOAD?.value ?? "").split(/[:\s]+/);
      assert.ok(preload, "the application has no LD_PRELOAD");
      if (overlay.includes("own-preload")) {
        assert.deepEqual(others, ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"],
          "the application's own preload, after the shim");
      } else {
        assert.deepEqual(others, []);
      }
      assert.ok(init, "no heapwatch-shim init container");
      // The shim's whole directory (the shim and the libraries it loads from
      // beside itself), copied into the volume's root: `cp -R <dir>/. <mount>/`.
      const [cp, recursive, source, dest, ...rest] = init.command;
      assert.equal(cp, "cp");
      assert.equal(recursive, "-R", "the shim's directory must be copied whole");
      assert.equal(rest.length, 0);
      assert.ok(source.endsWith("/."), `${source}: cp -R copies the directory's contents only from <dir>/.`);
      // The copy's source is the shim's directory in the image (Dockerfile:
      // prefix /opt/heapwatch, LIBDIR lib; preload/CMakeLists.txt installs it
      // in lib/heapwatch; the Python test checks the install and runs the copy).
      assert.equal(source, "/opt/heapwatch/lib/heapwatch/.");
      const i = mountHolding(init, path.posix.join(dest, "libheapwatch.so"));
      assert.equal(i.rel, "libheapwatch.so", "the copy does not land in the volume's root");
      const a = mountHolding(app, preload);
      assert.equal(a.volume, i.volume, "the app reads the shim from another volume");
      assert.equal(a.rel, "libheapwatch.so", "the app preloads another file than the copied shim");
      assert.equal(a.mount.readOnly, true, "the app need not write the shim");
      assert.equal(init.image, sidecar.image, "shim and daemon must come from one image");
    });

    test(`${where}: the downward API gives the application's memory limit`, () => {
      const ref = envOf(sidecar).HEAPWATCH_MEMORY_LIMIT?.valueFrom?.resourceFieldRef;
      assert.ok(ref, "HEAPWATCH_MEMORY_LIMIT is not from the downward API");
      assert.equal(ref.containerName, app.name);
      assert.equal(ref.resource, "limits.memory");
      assert.ok(["1", undefined].includes(ref.divisor), "heapwatchd wants bytes");
      if (overlay.startsWith("k8s/examples/")) {
        assert.ok(app.resources?.limits?.memory, "the example app has no memory limit");
      }
    });

    test(`${where}: port, probes and HTTP address agree with the collector`, () => {
      const env = envOf(sidecar);
      const [host, port] = env.HEAPWATCH_HTTP.value.split(":");
      assert.equal(host, "0.0.0.0", "the kubelet and Prometheus reach the pod IP");
      const p = sidecar.ports.find((x) => x.name === "heapwatch");
      assert.equal(p.containerPort, Number(port));
      for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const probe = sidecar[kind];
        assert.ok(probe?.httpGet, `${kind} missing`);
        assert.ok(sidecar.ports.some((x) => x.name === probe.httpGet.port || x.containerPort === probe.httpGet.port),
          `${kind} uses unknown port ${probe.httpGet.port}`);
        const route = probe.httpGet.path;
        assert.ok(apiDoc.includes(`\`${route}\``), `${route} is not in docs/api.md`);
        if (collectorRoutes) {
          assert.ok(collector.includes(`"${route}"`), `the collector does not route ${route}`);
        }
      }
      assert.equal(sidecar.readinessProbe.httpGet.path, "/readyz");
      assert.equal(sidecar.livenessProbe.httpGet.path, "/healthz");
    });

    test(`${where}: every HEAPWATCH_* variable of heapwatchd is one of its flags`, (t) => {
      if (!flags) return t.skip("collector/config.cc has no option table yet");
      for (const name of Object.keys(envOf(sidecar)).filter((n) => n.startsWith("HEAPWATCH_"))) {
        const flag = name.slice("HEAPWATCH_".length).toLowerCase().replaceAll("_", "-");
        assert.ok(flags.has(flag), `${name}: heapwatchd has no --${flag}`);
      }
    });

    test(`${where}: the token comes from a Secret`, () => {
      const file = envOf(sidecar).HEAPWATCH_TOKEN_FILE?.value;
      assert.ok(file, "heapwatchd runs without a token on 0.0.0.0");
      const m = mountHolding(sidecar, file);
      const volume = pod.volumes.find((v) => v.name === m.volume);
      assert.ok(volume.secret, "the token is not from a Secret");
      assert.equal(m.rel, "token", "the file is the Secret's `token` key");
      const secret = objects.find((o) => o.kind === "Secret" && o.metadata.name === volume.secret.secretName);
      if (objects.some((o) => o.kind === "Secret")) {
        assert.ok(secret?.data?.token, `Secret ${volume.secret.secretName} has no token`);
      }
      for (const sm of objects.filter((o) => o.kind === "ServiceMonitor")) {
        for (const ep of sm.spec.endpoints) {
          assert.equal(ep.authorization?.credentials?.name, volume.secret.secretName);
          assert.equal(ep.authorization?.credentials?.key, "token");
        }
      }
    });

    test(`${where}: restrictive security contexts`, () => {
      for (const c of [sidecar, init]) {
        const sc = c.securityContext;
        assert.equal(sc.readOnlyRootFilesystem, true, `${c.name}: writable root`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${c.name}`);
        assert.deepEqual(sc.capabilities.drop, ["ALL"], `${c.name}`);
        assert.equal(sc.privileged ?? false, false);
        assert.equal(sc.seccompProfile?.type, "RuntimeDefault");
        assert.ok(c.resources?.requests?.memory && c.resources?.limits?.memory, `${c.name}: no memory request/limit`);
        assert.ok(c.resources?.requests?.cpu && c.resources?.limits?.cpu, `${c.name}: no cpu request/limit`);
      }
      assert.equal(init.securityContext.runAsNonRoot, true);
      assert.equal(init.securityContext.capabilities.add, undefined);
      const sc = sidecar.securityContext;
      const added = sc.capabilities.add ?? [];
      assert.ok(added.every((x) => x === "SYS_PTRACE"), `unexpected capabilities ${added}`);
      if (added.length) {
        // A non-root process gets no effective capability from `add`.
        assert.equal(sc.runAsUser, 0, "SYS_PTRACE is useless to a non-root heapwatchd");
        assert.equal(sc.runAsNonRoot, false);
      } else {
        assert.equal(sc.runAsNonRoot, true);
        // Without CAP_SYS_PTRACE the ptrace access check on /proc/<pid>/maps
        // and /root passes only for the same uid and gid.
        assert.equal(containerUid(pod, app), sc.runAsUser,
          "the app runs as another uid: heapwatchd cannot read its /proc/<pid>/root");
        assert.equal(containerGid(pod, app), sc.runAsGroup,
          "the app runs as another gid: heapwatchd cannot read its /proc/<pid>/root");
        assert.equal(envOf(sidecar).HEAPWATCH_ALLOW_UIDS, undefined, "same uid: no extra uids");
      }
    });

    test(`${where}: the Service reaches the sidecar and the ServiceMonitor the Service`, () => {
      const services = objects.filter((o) => o.kind === "Service"
        && o.metadata.labels?.["app.kubernetes.io/name"] === "heapwatch"
        && o.metadata.labels?.["app.kubernetes.io/instance"] === dep.metadata.name);
      assert.equal(services.length, 1, "one heapwatch Service per Deployment");
      const svc = services[0];
      assert.equal(svc.metadata.name, `${dep.metadata.name}-heapwatch`);
      const labels = dep.spec.template.metadata.labels;
      for (const [k, v] of Object.entries(svc.spec.selector)) {
        assert.equal(labels[k], v, `Service selector ${k}=${v} misses the pods`);
      }
      for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) {
        assert.equal(svc.spec.selector[k], v);
      }
      const sp = svc.spec.ports.find((x) => x.name === "heapwatch");
      assert.ok(sidecar.ports.some((x) => x.name === sp.targetPort), "targetPort is not the sidecar's");
      for (const sm of objects.filter((o) => o.kind === "ServiceMonitor")) {
        const sel = sm.spec.selector.matchLabels;
        const mine = Object.entries(sel).every(([k, v]) => svc.metadata.labels[k] === v);
        const others = objects.filter((o) => o.kind === "Service" && o !== svc
          && Object.entries(sel).every(([k, v]) => o.metadata.labels?.[k] === v));
        assert.ok(mine, `${sm.metadata.name} does not select ${svc.metadata.name}`);
        assert.equal(others.length, 0, `${sm.metadata.name} also scrapes other Services`);
        for (const ep of sm.spec.endpoints) {
          assert.ok(svc.spec.ports.some((x) => x.name === ep.port), `no Service port ${ep.port}`);
          assert.equal(ep.path, "/metrics");
          assert.ok(apiDoc.includes("## GET /metrics"));
          if (collectorRoutes) assert.ok(collector.includes('"/metrics"'));
        }
      }
    });
  }
}

test("the PrometheusRule holds exactly the rules of k8s/prometheus/heapwatch-rules.yaml", () => {
  const plain = YAML.parse(fs.readFileSync(path.join(repo, "k8s/prometheus/heapwatch-rules.yaml"), "utf8"));
  const [rule] = rendered.get("k8s/prometheus-operator").filter((o) => o.kind === "PrometheusRule");
  assert.deepEqual(rule.spec.groups, plain.groups);
});

test("the alert rules use only metrics documented in docs/api.md", () => {
  const plain = fs.readFileSync(path.join(repo, "k8s/prometheus/heapwatch-rules.yaml"), "utf8");
  const used = new Set(plain.match(/\bheapwatch_[a-z_]+/g));
  assert.ok(used.size >= 5);
  for (const name of used) assert.ok(apiDoc.includes(`\`${name}`), `${name} is not in docs/api.md`);
});
