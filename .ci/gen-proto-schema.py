#!/usr/bin/env python3
"""Generates src/sim/api/protobuf/schema.rs: the protobuf field tables of the built-in
kinds the simulation serves, so that it can decode the protobuf bodies kubectl sends.

Field numbers and types come from the k8s-pb crate (prost code generated from the
Kubernetes .proto files); JSON field names from k8s-openapi (the same API version), whose
deserializers name every field as the API does (`podIP`, `hostIPC`, ...).

    python3 .ci/gen-proto-schema.py ~/.cargo/registry/src/*/k8s-pb-0.9.0 \
        ~/.cargo/registry/src/*/k8s-openapi-0.29.0 > src/sim/api/protobuf/schema.rs
"""
import os, re, sys

pb_root, openapi_root = sys.argv[1], sys.argv[2]

# snake_case -> JSON name, from k8s-openapi's deserializers.
json_names = {}
for d, _, files in os.walk(os.path.join(openapi_root, "src", "v1_34")):
    for f in files:
        if f.endswith(".rs"):
            for m in re.finditer(r'"([A-Za-z0-9$_-]+)" => Field::Key_([a-z0-9_]+),', open(os.path.join(d, f)).read()):
                json_names.setdefault(m.group(2), m.group(1))

def json_name(field):
    field = field.removeprefix("r#")
    if field in json_names:
        return json_names[field]
    if field + "_" in json_names:
        return json_names[field + "_"]
    parts = field.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])

# Every message: module path -> {name: [(tag, json, kind, target)]}
messages = {}
struct_re = re.compile(r"pub struct (\w+) \{(.*?)\n\}", re.S)
field_re = re.compile(r'#\[prost\(([^\]]*?)tag = "(\d+)"[^\]]*\)\]\s*pub (r#\w+|\w+):')

def fields_of(body):
    """(attrs, tag, name, type) of each field; a type may span lines."""
    for fm in field_re.finditer(body):
        depth, i = 0, fm.end()
        while True:
            c = body[i]
            if c == "<":
                depth += 1
            elif c == ">":
                depth -= 1
            elif c == "," and depth == 0:
                break
            i += 1
        ty = " ".join(body[fm.end():i].split()).replace("< ", "<").replace(" >", ">").replace(",>", ">")
        yield fm.group(1), int(fm.group(2)), fm.group(3), ty
for d, _, files in os.walk(os.path.join(pb_root, "src")):
    for f in files:
        if f != "mod.rs":
            continue
        rel = os.path.relpath(d, os.path.join(pb_root, "src"))
        module = [] if rel == "." else rel.split(os.sep)
        text = open(os.path.join(d, f)).read()
        for sm in struct_re.finditer(text):
            fields = []
            for attrs, tag, name, ty in fields_of(sm.group(2) + "\n"):
                repeated = "repeated" in attrs
                target = None
                if attrs.startswith("message"):
                    inner = re.search(r"(?:Option|Vec)<(.+)>$", ty.strip()).group(1)
                    path = inner.split("::")
                    base = list(module)
                    while path and path[0] == "super":
                        base.pop(); path.pop(0)
                    target = "/".join(base + path)
                    kind = "RepMsg" if repeated else "Msg"
                elif attrs.startswith("btree_map"):
                    vt = re.search(r'btree_map = "string, (\w+)"', attrs).group(1)
                    if vt == "message":
                        inner = re.search(r"BTreeMap<[^,]+,\s*(.+)>$", ty.strip()).group(1)
                        path = inner.split("::"); base = list(module)
                        while path and path[0] == "super":
                            base.pop(); path.pop(0)
                        target = "/".join(base + path)
                        kind = "MapMsg"
                    else:
                        kind = {"string": "MapStr", "bytes": "MapBytes"}[vt]
                else:
                    scalar = attrs.split(",")[0].strip()
                    base = {"string": "Str", "bool": "Bool", "int32": "I32", "int64": "I64",
                            "double": "F64", "float": "F32", "bytes = \"vec\"": "Bytes"}[scalar]
                    kind = "Rep" + base if repeated else base
                fields.append((tag, json_name(name), kind, target))
            messages["/".join(module + [sm.group(1)])] = fields

roots = {
    ("v1", k): f"api/core/v1/{k}" for k in
    ["Namespace", "Node", "Pod", "Service", "PersistentVolumeClaim", "ResourceQuota",
     "ServiceAccount", "ConfigMap", "LimitRange", "Event", "Secret", "Binding"]
}
roots.update({("apps/v1", k): f"api/apps/v1/{k}" for k in ["Deployment", "StatefulSet"]})
roots[("batch/v1", "Job")] = "api/batch/v1/Job"
roots[("coordination.k8s.io/v1", "Lease")] = "api/coordination/v1/Lease"
roots[("events.k8s.io/v1", "Event")] = "api/events/v1/Event"
for k in ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]:
    roots[("rbac.authorization.k8s.io/v1", k)] = f"api/rbac/v1/{k}"
roots[("meta.k8s.io/v1", "DeleteOptions")] = "apimachinery/pkg/apis/meta/v1/DeleteOptions"

# Messages with their own JSON form, decoded by hand (see protobuf/mod.rs).
special = {
    "apimachinery/pkg/apis/meta/v1/Time": "Time",
    "apimachinery/pkg/apis/meta/v1/MicroTime": "Time",
    "apimachinery/pkg/api/resource/Quantity": "Quantity",
    "apimachinery/pkg/util/intstr/IntOrString": "IntOrString",
    "apimachinery/pkg/runtime/RawExtension": "Raw",
    "apimachinery/pkg/apis/meta/v1/FieldsV1": "Raw",
    "apimachinery/pkg/apis/meta/v1/Duration": "Duration",
}

needed, todo = set(), list(roots.values())
while todo:
    m = todo.pop()
    if m in needed or m in special:
        continue
    needed.add(m)
    for _, _, kind, target in messages[m]:
        if target:
            todo.append(target)

def rust_kind(kind, target):
    if target is None:
        return f"Kind::{kind}"
    if target in special:
        s = special[target]
        return {"Msg": f"Kind::{s}", "RepMsg": f"Kind::Rep{s}", "MapMsg": f"Kind::Map{s}"}[kind]
    return f'Kind::{kind}("{target}")'

print("// Generated by .ci/gen-proto-schema.py from k8s-pb 0.9.0 (Kubernetes 1.34 protos) and")
print("// k8s-openapi 0.29.0 (JSON names). Do not edit by hand.")
print("use super::{Field, Kind};\n")
print("/// (apiVersion, kind) -> message.")
print("pub const KINDS: &[(&str, &str, &str)] = &[")
for (av, k), m in sorted(roots.items()):
    print(f'    ("{av}", "{k}", "{m}"),')
print("];\n")
print("/// Each message's fields: (number, JSON name, type).")
print("pub const MESSAGES: &[(&str, &[Field])] = &[")
for m in sorted(needed):
    print(f'    ("{m}", &[')
    for tag, name, kind, target in messages[m]:
        print(f'        Field({tag}, "{name}", {rust_kind(kind, target)}),')
    print("    ]),")
print("];")
