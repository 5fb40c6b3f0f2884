//! The CustomResourceDefinitions of vfnet's resources, rendered as the YAML files checked in
//! under `crds/` (and copied to `manifests/crds/`, since kustomize only reads files below its
//! own directory), and beside them the JSON schema of the DRA driver's opaque
//! [`crate::vfconfig::VfConfig`] (`vfconfig.schema.json`, not a Kubernetes object: kustomize
//! does not list it).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::{VfPool, VfProfile};

/// The directories, relative to the workspace root, that hold the generated files.
pub const OUTPUT_DIRS: &[&str] = &["crds", "manifests/crds"];

/// The command that regenerates the files.
pub const GENERATE_COMMAND: &str = "cargo run -p vfnet-crds --bin crdgen";

/// Every CRD vfnet defines, tidied (see [`tidy`]).
pub fn definitions() -> Vec<CustomResourceDefinition> {
    [VfProfile::crd(), VfPool::crd()].into_iter().map(tidy).collect()
}

/// Three touches to the derived schemas:
/// - descriptions come from doc comments, wrapped at the source's width: a single line break
///   becomes a space (paragraphs stay), so `kubectl explain` wraps them to the terminal instead;
/// - `nullable: true`, which kube adds for every `Option` field, goes: vfnet never writes `null`
///   (absent fields are skipped), and without it the API server prunes a `null` a client sends
///   instead of keeping it, so `has(self.vlan)` in the CEL rules means "set to a number";
/// - schemars' unsigned formats (`uint16`, ...), which the API server does not know (it warns
///   `unrecognized format` on every apply), become `int32`/`int64` with the type's bounds.
pub fn tidy(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            tidy_schema(schema);
        }
    }
    crd
}

fn tidy_schema(schema: &mut JSONSchemaProps) {
    if let Some(text) = &mut schema.description {
        *text = unwrap_lines(text);
    }
    schema.nullable = None;
    let kubernetes_format = match schema.format.as_deref() {
        Some("uint8") => Some(("int32", f64::from(u8::MAX))),
        Some("uint16") => Some(("int32", f64::from(u16::MAX))),
        Some("uint32") => Some(("int64", f64::from(u32::MAX))),
        _ => None,
    };
    if let Some((format, max)) = kubernetes_format {
        schema.format = Some(format.to_owned());
        schema.maximum = Some(schema.maximum.map_or(max, |m| m.min(max)));
        schema.minimum = Some(schema.minimum.map_or(0.0, |m| m.max(0.0)));
    }
    let mut children: Vec<&mut JSONSchemaProps> = Vec::new();
    children.extend(schema.properties.iter_mut().flat_map(|p| p.values_mut()));
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => children.push(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => children.extend(items.iter_mut()),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &mut schema.additional_properties {
        children.push(extra);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of].into_iter().flatten() {
        children.extend(list.iter_mut());
    }
    children.extend(schema.not.as_deref_mut());
    for child in children {
        tidy_schema(child);
    }
}

/// Joins the lines of each paragraph with spaces.
pub(crate) fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The file name of the VfConfig JSON schema.
pub const VFCONFIG_SCHEMA_FILE: &str = "vfconfig.schema.json";

/// A generated file: its name (`<plural>.<group>.yaml`, the CRD's name; or
/// [`VFCONFIG_SCHEMA_FILE`]) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// The file name, e.g. `vfprofiles.vfnet.dev.yaml`.
    pub name: String,
    /// The YAML.
    pub text: String,
}

/// Why a CRD or the schema could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("cannot render {name}: {message}")]
pub struct RenderError {
    /// What was rendered (`CRD vfpools.vfnet.dev`, `vfconfig.schema.json`).
    pub name: String,
    /// The serializer's message.
    pub message: String,
}

/// Renders one CRD as a YAML document, under a comment saying how it was made.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<GeneratedFile, RenderError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let body = serde_saphyr::to_string(crd)
        .map_err(|e| RenderError { name: format!("CRD {name} as YAML"), message: e.to_string() })?;
    let text = format!(
        "# The {kind} CustomResourceDefinition, generated from the vfnet-crds crate by\n\
         # `{GENERATE_COMMAND}`: do not edit (`cargo xtask test` fails when it is stale).\n\
         {body}",
        kind = crd.spec.names.kind,
    );
    Ok(GeneratedFile { name: format!("{name}.yaml"), text })
}

/// The VfConfig JSON schema as a file: pretty JSON, ending in a newline.
pub fn vfconfig_schema() -> Result<GeneratedFile, RenderError> {
    let text = serde_json::to_string_pretty(&crate::vfconfig::json_schema())
        .map_err(|e| RenderError { name: VFCONFIG_SCHEMA_FILE.to_owned(), message: e.to_string() })?;
    Ok(GeneratedFile { name: VFCONFIG_SCHEMA_FILE.to_owned(), text: format!("{text}\n") })
}

/// Every generated file: the CRDs, then the VfConfig schema.
pub fn files() -> Result<Vec<GeneratedFile>, RenderError> {
    let mut files = definitions().iter().map(to_yaml).collect::<Result<Vec<_>, _>>()?;
    files.push(vfconfig_schema()?);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;

    fn crd(kind: &str) -> CustomResourceDefinition {
        definitions().into_iter().find(|c| c.spec.names.kind == kind).expect("a CRD of that kind")
    }

    fn schema(kind: &str) -> Value {
        let crd = crd(kind);
        serde_json::to_value(crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()))
            .expect("the schema serializes")
    }

    fn columns(kind: &str) -> Vec<(String, String, String)> {
        crd(kind).spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
            .collect()
    }

    fn col(name: &str, ty: &str, path: &str) -> (String, String, String) {
        (name.to_owned(), ty.to_owned(), path.to_owned())
    }

    #[test]
    fn names_scope_and_versions() {
        for (kind, plural, short) in [("VfProfile", "vfprofiles", "vfp"), ("VfPool", "vfpools", "vfpool")] {
            let crd = crd(kind);
            assert_eq!(crd.metadata.name.as_deref(), Some(format!("{plural}.vfnet.dev").as_str()));
            assert_eq!(crd.spec.group, crate::GROUP);
            assert_eq!(crd.spec.scope, "Cluster");
            assert_eq!(crd.spec.names.plural, plural);
            assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_owned()][..]));
            assert_eq!(crd.spec.versions.len(), 1);
            let v = &crd.spec.versions[0];
            assert!(v.name == crate::VERSION && v.served && v.storage);
        }
    }

    #[test]
    fn printer_columns() {
        assert_eq!(
            columns("VfProfile"),
            vec![
                col("VLAN", "integer", ".spec.vlan"),
                col("Physical network", "string", ".spec.physicalNetwork"),
                col("Namespaces", "string", ".spec.allowedNamespaces"),
                col("Age", "date", ".metadata.creationTimestamp"),
            ]
        );
        assert_eq!(
            columns("VfPool"),
            vec![
                col("Resource", "string", ".spec.resourceName"),
                col("Device type", "string", ".spec.deviceType"),
                col("Mode", "string", ".spec.mode"),
                col("Node selector", "string", ".spec.nodeSelector"),
                col("Age", "date", ".metadata.creationTimestamp"),
            ]
        );
    }

    /// The `x-kubernetes-validations` rules under `path`, by rule text.
    fn rules(schema: &Value, path: &[&str]) -> Vec<String> {
        let mut node = schema;
        for key in path {
            node = &node["properties"][key];
        }
        node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn cel_rules_are_in_the_schema() {
        let profile = schema("VfProfile");
        let spec_rules = rules(&profile, &["spec"]);
        assert_eq!(spec_rules.len(), 3, "{spec_rules:?}");
        assert!(spec_rules[0].contains("self.vlanQoS") && spec_rules[0].contains("self.vlan != 0"));
        assert!(spec_rules[1].contains("'802.1ad'") && spec_rules[1].contains("self.vlan != 0"));
        assert!(spec_rules[2].contains("self.minTxRateMbps <= self.maxTxRateMbps"));
        assert_eq!(rules(&profile, &["spec", "podVlanRange"]), vec!["self.min <= self.max"]);
    }

    /// Ranges, enums and patterns, where the issue asks for them.
    #[test]
    fn openapi_validation() {
        let profile = schema("VfProfile");
        let p = &profile["properties"]["spec"]["properties"];
        let range = |v: &Value| (v["minimum"].as_f64(), v["maximum"].as_f64());
        assert_eq!(range(&p["vlan"]), (Some(0.0), Some(4094.0)));
        assert_eq!(range(&p["vlanQoS"]), (Some(0.0), Some(7.0)));
        assert_eq!(range(&p["mtu"]), (Some(68.0), Some(65535.0)));
        assert_eq!(range(&p["podVlanRange"]["properties"]["min"]), (Some(1.0), Some(4094.0)));
        assert_eq!(range(&p["podVlanRange"]["properties"]["max"]), (Some(1.0), Some(4094.0)));
        assert_eq!(p["vlanProto"]["enum"], json!(["802.1Q", "802.1ad"]));
        assert_eq!(p["linkState"]["enum"], json!(["auto", "enable", "disable"]));
        let pool = schema("VfPool");
        let p = &pool["properties"]["spec"]["properties"];
        assert_eq!(p["deviceType"]["enum"], json!(["netdevice", "vfio-pci"]));
        assert_eq!(p["allocationPolicy"]["enum"], json!(["spread", "pack"]));
        assert_eq!(p["mode"]["enum"], json!(["devicePlugin", "dra"]));
        assert_eq!(p["mode"]["default"], "devicePlugin");
        assert_eq!(p["resourceName"]["pattern"], "^[A-Za-z0-9_-]+$");
        assert_eq!(pool["properties"]["spec"]["required"], json!(["resourceName"]));
    }

    /// Every property, at every depth, says what it is (`kubectl explain`), in one paragraph
    /// without the source's line breaks; no `nullable` is left.
    #[test]
    fn every_field_is_described() {
        fn walk(path: &str, node: &Value, seen: &mut usize) {
            if let Some(props) = node["properties"].as_object() {
                for (name, prop) in props {
                    let path = format!("{path}.{name}");
                    let text = prop["description"].as_str().unwrap_or_default();
                    assert!(text.len() > 10, "{path} has no description");
                    assert!(!text.contains('\n'), "{path}: {text:?}");
                    assert!(prop.get("nullable").is_none(), "{path} is nullable");
                    // The formats the API server knows for integers (others draw a warning).
                    let format = prop["format"].as_str().unwrap_or("int64");
                    assert!(["int32", "int64"].contains(&format) || prop["type"] != "integer", "{path}: {format}");
                    *seen += 1;
                    walk(&path, prop, seen);
                    walk(&format!("{path}[]"), &prop["items"], seen);
                }
            }
        }
        for kind in ["VfProfile", "VfPool"] {
            let mut seen = 0;
            walk(kind, &schema(kind), &mut seen);
            assert!(seen > 10, "{kind}: only {seen} properties");
        }
    }

    /// What crdgen writes parses back to the same object.
    #[test]
    fn yaml_round_trips() {
        let files = files().expect("the CRDs render");
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["vfprofiles.vfnet.dev.yaml", "vfpools.vfnet.dev.yaml", VFCONFIG_SCHEMA_FILE]);
        let schema: Value = serde_json::from_str(&files[2].text).expect("the schema is JSON");
        assert_eq!(schema, serde_json::to_value(crate::vfconfig::json_schema()).expect("the schema serializes"));
        for (file, crd) in files.iter().zip(definitions()) {
            assert!(file.text.starts_with("# The "), "{}", file.name);
            let parsed: Value = serde_saphyr::from_str(&file.text).expect("the YAML parses");
            assert_eq!(parsed, serde_json::to_value(&crd).expect("the CRD serializes"), "{}", file.name);
        }
    }

    fn cel(kind: &str, spec: Value) -> Result<(), String> {
        let object = json!({
            "apiVersion": "vfnet.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec,
        });
        kube::core::cel::Validator::new().validate(&schema(kind), &object, None).map_err(|e| e.to_string())
    }

    /// The CEL rules, evaluated client-side by kube-cel as the API server would, agree with
    /// `VfProfileSpec::validate` on the node.
    #[test]
    fn cel_rules_reject_what_validate_rejects() {
        let cases: BTreeMap<&str, (Value, Option<&str>)> = [
            ("plain", (json!({"vlan": 100}), None)),
            ("qos with vlan", (json!({"vlan": 100, "vlanQoS": 3}), None)),
            ("qos 0 without vlan", (json!({"vlanQoS": 0}), None)),
            ("qos without vlan", (json!({"vlanQoS": 3}), Some("a non-zero vlanQoS needs a non-zero vlan"))),
            ("qos with vlan 0", (json!({"vlan": 0, "vlanQoS": 3}), Some("a non-zero vlanQoS needs a non-zero vlan"))),
            ("802.1ad with vlan", (json!({"vlan": 7, "vlanProto": "802.1ad"}), None)),
            ("802.1Q without vlan", (json!({"vlanProto": "802.1Q"}), None)),
            (
                "802.1ad without vlan",
                (json!({"vlanProto": "802.1ad"}), Some("vlanProto 802.1ad needs a non-zero vlan")),
            ),
            ("rates in order", (json!({"minTxRateMbps": 10, "maxTxRateMbps": 100}), None)),
            ("min above no limit", (json!({"minTxRateMbps": 10, "maxTxRateMbps": 0}), None)),
            ("min alone", (json!({"minTxRateMbps": 10}), None)),
            (
                "min above max",
                (
                    json!({"minTxRateMbps": 50, "maxTxRateMbps": 10}),
                    Some("minTxRateMbps must not be above maxTxRateMbps"),
                ),
            ),
            ("range", (json!({"podVlanRange": {"min": 200, "max": 299}}), None)),
            ("one-VLAN range", (json!({"podVlanRange": {"min": 200, "max": 200}}), None)),
            (
                "range backwards",
                (json!({"podVlanRange": {"min": 300, "max": 200}}), Some("podVlanRange.min must not be above")),
            ),
        ]
        .into();
        for (name, (spec, want)) in cases {
            let by_cel = cel("VfProfile", spec.clone());
            let by_node: Result<(), String> = serde_json::from_value::<crate::profile::VfProfileSpec>(spec)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate().map_err(|e| e.to_string()));
            match want {
                None => {
                    assert_eq!(by_cel, Ok(()), "{name}");
                    assert_eq!(by_node, Ok(()), "{name}");
                }
                Some(needle) => {
                    let e = by_cel.expect_err(name);
                    assert!(e.contains(needle), "{name}: {e}");
                    assert!(by_node.is_err(), "{name}: validate() accepts what CEL refuses");
                }
            }
        }
        assert_eq!(cel("VfPool", json!({"resourceName": "a"})), Ok(()));
    }
}
