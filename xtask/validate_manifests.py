"""Offline validation of vfnet's manifests, run by `cargo xtask test` (the "manifests" phase).

    validate_manifests.py --kubectl KUBECTL --kubernetes-version 1.33 REPO_ROOT

1. `kubectl kustomize manifests/` renders what `kubectl apply -k manifests/` would apply; every
   object is checked against the Kubernetes OpenAPI schemas of that version (PyPI's
   kubernetes-validate, strict: unknown fields are errors), and the DaemonSet and RBAC are
   checked for what the design requires of them.
2. Every object under manifests/examples/: built-in kinds against the same schemas; VfPool and
   VfProfile against the openAPIV3Schema of the checked-in CRDs (jsonschema; unknown fields
   refused, as `kubectl apply`'s strict field validation does); NetworkAttachmentDefinitions for
   their shape (their config is parsed by the plugin itself in cni/tests/manifests.rs).
3. Negative cases: example-shaped objects that break a range, an enum, a pattern or a field name
   must be refused by the CRD schemas, so a schema that accepts anything fails this check.

The CRDs' CEL rules (x-kubernetes-validations) are not evaluated here: crds/tests/examples.rs
evaluates them on the same examples with kube-cel.
"""

import argparse
import copy
import glob
import json
import os
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

NAMESPACE = "vfnet-system"
IMAGE = "vfnet:dev"
HOST_PATHS = {
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet/pod-resources",
    "/sys",
    "/run/vfnet",
    "/var/lib/vfnet",
    "/opt/cni/bin",
    "/var/run/k8s.cni.cncf.io/devinfo",
    "/etc/vfnet",
}
# The init container installs the binary and the node configuration from the ConfigMap.
INSTALL_COMMAND = [
    "/usr/bin/vfnet",
    "install",
    "/host/opt/cni/bin",
    "--node-config",
    "/etc/vfnet-config/node.json",
    "/host/etc/vfnet/node.json",
]
# Network definition keys that name a host path or an endpoint: the node configuration's.
NODE_KEYS = {"stateDir", "runDir", "profileDir", "logFile", "podResourcesSocket", "kubeconfig"}
CRD_KINDS = {"VfPool", "VfProfile"}


class Failures:
    def __init__(self):
        self.problems = []
        self.passed = 0

    def ok(self, what):
        self.passed += 1
        print(f"    ok      {what}")

    def fail(self, what, why):
        self.problems.append(f"{what}: {why}")
        print(f"    FAILED  {what}: {why}")

    def check(self, condition, what, why):
        if condition:
            return True
        self.fail(what, why)
        return False


def name_of(obj):
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "<no name>")
    return f"{obj.get('kind', '<no kind>')}/{ns + '/' if ns else ''}{name}"


def builtin(obj, where, version, failures):
    """Validates a built-in kind against Kubernetes' own schema (strict)."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        failures.fail(f"{where}: {name_of(obj)}", f"{path}: {e.message}")
        return
    except kubernetes_validate.SchemaNotFoundError as e:
        failures.fail(f"{where}: {name_of(obj)}", e.message)
        return
    failures.ok(f"{where}: {name_of(obj)} (Kubernetes {version} schema)")


def strict_schema(schema):
    """The CRD's structural schema as JSON Schema, refusing unknown fields like strict field
    validation does (the API server would otherwise prune them silently)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for child in (node.get("properties") or {}).values():
            walk(child)
        walk(node.get("items"))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(schema)
    # The API server validates metadata itself; the CRD schema leaves it out.
    schema.setdefault("properties", {})["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}},
    }
    schema["properties"]["apiVersion"] = {"const": "vfnet.dev/v1alpha1"}
    schema["properties"]["kind"] = {"type": "string"}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return schema


def crd_schemas(root):
    schemas = {}
    for path in sorted(glob.glob(os.path.join(root, "crds", "*.yaml"))):
        with open(path) as f:
            crd = yaml.safe_load(f)
        kind = crd["spec"]["names"]["kind"]
        version = crd["spec"]["versions"][0]
        schemas[kind] = strict_schema(version["schema"]["openAPIV3Schema"])
    return schemas


def crd_errors(obj, schemas):
    validator = jsonschema.Draft7Validator(schemas[obj["kind"]])
    return sorted(
        (".".join(str(p) for p in e.absolute_path) or "<root>") + ": " + e.message
        for e in validator.iter_errors(obj)
    )


def check_daemonset(ds, failures):
    what = f"rendered {name_of(ds)}"
    pod = ds["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod.get("containers", [])}
    inits = {c["name"]: c for c in pod.get("initContainers", [])}
    agent = containers.get("device-plugin", {})
    install = inits.get("install-cni", {})
    host_paths = {v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}
    env = {e["name"]: e for e in agent.get("env", [])}
    checks = [
        (pod.get("hostNetwork") is True, "hostNetwork is not true"),
        (pod.get("serviceAccountName") == "vfnet", "does not run as ServiceAccount vfnet"),
        (agent.get("image") == IMAGE and install.get("image") == IMAGE, f"images are not {IMAGE}"),
        (agent.get("command") == ["/usr/bin/vfnet-device-plugin"], "the agent's command"),
        ((agent.get("securityContext") or {}).get("privileged") is True, "the agent is not privileged"),
        (install.get("command") == INSTALL_COMMAND, "the install command"),
        (
            any((v.get("configMap") or {}).get("name") == "vfnet-node-config" for v in pod.get("volumes", [])),
            "the node configuration ConfigMap is not mounted",
        ),
        (HOST_PATHS <= host_paths, f"missing host paths {sorted(HOST_PATHS - host_paths)}"),
        (
            env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
            "NODE_NAME is not the downward API's spec.nodeName",
        ),
        (env.get("VFNET_METRICS_ADDR", {}).get("value", "").startswith("0.0.0.0:"), "metrics not on the node address"),
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        get = (agent.get(probe) or {}).get("httpGet") or {}
        checks.append((get.get("path") == "/healthz", f"{probe} is not GET /healthz"))
    for c in (agent, install):
        res = c.get("resources") or {}
        checks.append((bool(res.get("requests")) and bool(res.get("limits")), f"{c.get('name')}: requests and limits"))
    bad = [why for good, why in checks if not good]
    if bad:
        failures.fail(what, "; ".join(bad))
    else:
        failures.ok(f"{what}: host network, privileged agent, probes, host paths, resources")


def check_rbac(objects, failures):
    roles = [o for o in objects if o["kind"] == "ClusterRole"]
    if not failures.check(len(roles) == 1, "rendered RBAC", f"{len(roles)} ClusterRoles, expected 1"):
        return
    granted = set()
    for rule in roles[0].get("rules", []):
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    granted.add((group, resource, verb))
    wanted = {(g, r, v) for g, r in [("vfnet.dev", "vfprofiles"), ("vfnet.dev", "vfpools"), ("", "nodes")]
              for v in ("get", "list", "watch")}
    wanted |= {(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")}
    # The DRA driver: its node's slices (the admission policy holds it to its node), the claims it
    # prepares, their device status.
    wanted |= {("resource.k8s.io", "resourceslices", v)
               for v in ("get", "list", "watch", "create", "update", "patch", "delete")}
    wanted |= {("resource.k8s.io", "resourceclaims", "get")}
    wanted |= {("resource.k8s.io", "resourceclaims/status", v) for v in ("patch", "update")}
    wanted |= {("resource.k8s.io", "resourceclaims/driver", v)
               for v in ("associated-node:patch", "associated-node:update")}
    what = f"rendered {name_of(roles[0])}"
    if granted != wanted:
        failures.fail(what, f"grants {sorted(granted - wanted)} beyond, lacks {sorted(wanted - granted)}")
    else:
        failures.ok(f"{what}: exactly get/list/watch vfprofiles, vfpools, nodes; create/patch events; "
                    "its node's resourceslices, get resourceclaims, write resourceclaims/status")
    for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        subjects = binding.get("subjects", [])
        failures.check(
            subjects == [{"kind": "ServiceAccount", "name": "vfnet", "namespace": NAMESPACE}]
            and binding["roleRef"]["name"] == roles[0]["metadata"]["name"],
            f"rendered {name_of(binding)}",
            f"binds {subjects} to {binding['roleRef']['name']}",
        )


def check_rendered(root, kubectl, version, failures):
    print("==> kubectl kustomize manifests/")
    out = subprocess.run(
        [kubectl, "kustomize", os.path.join(root, "manifests")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        failures.fail("kubectl kustomize manifests/", out.stderr.strip())
        return
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    kinds = sorted(o["kind"] for o in objects)
    expected = sorted(["Namespace", "CustomResourceDefinition", "CustomResourceDefinition", "ServiceAccount",
                       "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "DeviceClass",
                       "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"])
    failures.check(kinds == expected, "rendered kinds", f"{kinds}, expected {expected}")
    for o in objects:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "vfnet-node-config":
            try:
                node = json.loads(o["data"]["node.json"])
                problem = "allows network overrides" if node.get("allowNetworkOverrides") else None
            except (KeyError, TypeError, ValueError) as e:
                problem = f"data.node.json is not JSON: {e}"
            failures.check(problem is None, "the node configuration (multi-tenant: no overrides)", problem)
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "DeviceClass",
                      "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    for obj in objects:
        builtin(obj, "rendered", version, failures)
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            failures.check(ns is None, f"rendered {name_of(obj)}", "cluster-scoped but has a namespace")
        else:
            failures.check(ns == NAMESPACE, f"rendered {name_of(obj)}", f"namespace {ns}, expected {NAMESPACE}")
    # The rendered CRDs are the generated ones (kustomize only adds the part-of label).
    for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
        with open(os.path.join(root, "crds", crd["metadata"]["name"] + ".yaml")) as f:
            generated = yaml.safe_load(f)
        failures.check(crd["spec"] == generated["spec"], f"rendered {name_of(crd)}", "differs from crds/")
    for ds in (o for o in objects if o["kind"] == "DaemonSet"):
        check_daemonset(ds, failures)
    check_rbac(objects, failures)


def check_examples(root, version, schemas, failures):
    print("==> manifests/examples/")
    examples = []
    for path in sorted(glob.glob(os.path.join(root, "manifests", "examples", "*.yaml"))):
        where = os.path.relpath(path, root)
        with open(path) as f:
            try:
                docs = [d for d in yaml.safe_load_all(f) if d]
            except yaml.YAMLError as e:
                failures.fail(where, f"not YAML: {e}")
                continue
        for obj in docs:
            examples.append(obj)
            kind = obj.get("kind")
            if kind in CRD_KINDS:
                errors = crd_errors(obj, schemas)
                if errors:
                    failures.fail(f"{where}: {name_of(obj)}", "; ".join(errors))
                else:
                    failures.ok(f"{where}: {name_of(obj)} (its CRD's schema)")
            elif kind == "NetworkAttachmentDefinition":
                problems = []
                if obj.get("apiVersion") != "k8s.cni.cncf.io/v1":
                    problems.append(f"apiVersion {obj.get('apiVersion')}")
                if not obj.get("metadata", {}).get("namespace"):
                    problems.append("no namespace")
                try:
                    config = json.loads(obj["spec"]["config"])
                    if config.get("type") != "vfnet":
                        problems.append(f"config type {config.get('type')!r}, not vfnet")
                    if NODE_KEYS & set(config):
                        problems.append(f"sets node configuration keys {sorted(NODE_KEYS & set(config))}")
                    # A network for DRA claims (no resourceName) is governed by the claim's
                    # profile, which the admin's DeviceClass names.
                    dra_network = not obj.get("metadata", {}).get("annotations", {}).get(
                        "k8s.v1.cni.cncf.io/resourceName")
                    if "profile" not in config and not dra_network:
                        problems.append("names no profile (tenants write network definitions)")
                except (KeyError, TypeError, ValueError) as e:
                    problems.append(f"spec.config is not a JSON string: {e}")
                if problems:
                    failures.fail(f"{where}: {name_of(obj)}", "; ".join(problems))
                else:
                    failures.ok(f"{where}: {name_of(obj)} (shape; config parsed by cni/tests/manifests.rs)")
            else:
                builtin(obj, where, version, failures)
    check_tenancy(examples, failures)
    return examples


def check_tenancy(examples, failures):
    """The examples are the multi-tenant set-up: pools require profiles (each naming its
    tenants' profiles), and no role the examples give tenants reaches vfnet's CRDs."""
    for obj in examples:
        spec = obj.get("spec") or {}
        if obj.get("kind") == "VfPool":
            if spec.get("requireProfile") is True and spec.get("allowedProfiles"):
                failures.ok(f"{name_of(obj)}: requires profiles ({', '.join(spec['allowedProfiles'])})")
            else:
                failures.fail(name_of(obj), "does not set requireProfile and allowedProfiles")
        if obj.get("kind") in ("Role", "ClusterRole"):
            groups = {g for rule in obj.get("rules") or [] for g in rule.get("apiGroups") or []}
            if groups & {"vfnet.dev", "*"}:
                failures.fail(name_of(obj), f"grants tenants {sorted(groups & {'vfnet.dev', '*'})}")
            else:
                failures.ok(f"{name_of(obj)}: nothing on vfnet.dev")


# (description, kind, change to an example's spec, a word the error must contain)
NEGATIVE = [
    ("vlan above 4094", "VfProfile", {"vlan": 4095}, "4094"),
    ("vlanQoS above 7", "VfProfile", {"vlanQoS": 8}, "7"),
    ("unknown vlanProto", "VfProfile", {"vlanProto": "802.1x"}, "802.1x"),
    ("unknown linkState", "VfProfile", {"linkState": "up"}, "up"),
    ("mtu below 68", "VfProfile", {"mtu": 10}, "68"),
    ("podVlanRange.min 0", "VfProfile", {"podVlanRange": {"min": 0, "max": 10}}, "podVlanRange.min"),
    ("misspelt field", "VfProfile", {"vlans": [100]}, "vlans"),
    ("namespace with upper case", "VfProfile", {"allowedNamespaces": ["Tenant-A"]}, "Tenant-A"),
    ("resourceName with a slash", "VfPool", {"resourceName": "vfnet.dev/x"}, "resourceName"),
    ("unknown deviceType", "VfPool", {"deviceType": "vdpa"}, "vdpa"),
    ("unknown allocationPolicy", "VfPool", {"allocationPolicy": "random"}, "random"),
    ("numVfs 0", "VfPool", {"numVfs": 0}, "numVfs"),
    ("misspelt selector key", "VfPool", {"selector": {"pfName": ["ens1f0"]}}, "pfName"),
    ("bad vendor id", "VfPool", {"selector": {"vendors": ["86"]}}, "86"),
    ("bad PCI address", "VfPool", {"selector": {"pciAddresses": ["3b:02.9"]}}, "3b:02.9"),
]


def check_negative(examples, schemas, failures):
    print("==> example-shaped objects the CRD schemas must refuse")
    by_kind = {}
    for obj in examples:
        by_kind.setdefault(obj.get("kind"), obj)
    for what, kind, change, needle in NEGATIVE:
        if kind not in by_kind:
            failures.fail(f"refuses {what}", f"no example {kind} to start from")
            continue
        obj = copy.deepcopy(by_kind[kind])
        obj["spec"].update(change)
        errors = crd_errors(obj, schemas)
        if not errors:
            failures.fail(f"refuses {what}", "the schema accepts it")
        elif not any(needle in e for e in errors):
            failures.fail(f"refuses {what}", f"refused, but not for it: {errors}")
        else:
            failures.ok(f"refuses {what} ({errors[0]})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("root")
    args = parser.parse_args()
    failures = Failures()
    check_rendered(args.root, args.kubectl, args.kubernetes_version, failures)
    schemas = crd_schemas(args.root)
    if set(schemas) != CRD_KINDS:
        failures.fail("crds/", f"CRDs for {sorted(schemas)}, expected {sorted(CRD_KINDS)}")
        return 1
    examples = check_examples(args.root, args.kubernetes_version, schemas, failures)
    check_negative(examples, schemas, failures)
    print(f"==> manifests: {failures.passed} checks passed, {len(failures.problems)} failed")
    for problem in failures.problems:
        print(f"    {problem}")
    return 1 if failures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
