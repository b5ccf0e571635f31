//! Renders every kustomize overlay (and each overlay with the network-policy component, where
//! the overlay does not already include it) with `kubectl kustomize`, and hands the objects
//! to the policy tests in `tests/`. Also reads the Dockerfile and the crates' settings so the
//! tests can check the manifests against what the binaries really are.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;
use serde_json::Value;

/// One rendered combination, e.g. `dev`, `dev+network-policies`, `prod`.
pub struct Rendered {
    pub name: String,
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    pub fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("k8s-tests lives in the workspace")
        .to_path_buf()
}

/// `$KUBECTL`, else `kubectl` on PATH, if it runs and knows `kustomize`.
pub fn kubectl() -> Option<PathBuf> {
    let candidate = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    let ok = Command::new(&candidate)
        .args(["kustomize", "--help"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(candidate)
}

/// The overlays and component combinations, rendered. `scratch` holds the small wrapper
/// kustomizations that add the component to an overlay.
pub fn render_all(kubectl: &Path, scratch: &Path) -> Result<Vec<Rendered>, String> {
    let k8s = repo_root().join("k8s");
    let component = k8s.join("components/network-policies");
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(k8s.join("overlays"))
        .map_err(|e| format!("k8s/overlays: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    let mut out = Vec::new();
    for overlay in overlays {
        let name = file_name(&overlay);
        out.push(Rendered {
            name: name.clone(),
            objects: parse(&render(kubectl, &overlay)?)?,
        });
        let kustomization: Value = serde_norway::from_str(&read(&overlay.join("kustomization.yaml"))?)
            .map_err(|e| format!("{name}/kustomization.yaml: {e}"))?;
        let has_component = kustomization["components"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c.as_str().is_some_and(|c| c.ends_with("network-policies")))
        });
        let namespace = kustomization["namespace"].as_str().unwrap_or("default");
        if !has_component {
            out.push(with_components(
                kubectl,
                scratch,
                &overlay,
                namespace,
                &format!("{name}+network-policies"),
                &[&component],
            )?);
        }
        // The optional components, each on every overlay (with the network policies, so
        // their own policies are checked against the deny-all too).
        for optional in OPTIONAL_COMPONENTS {
            let extra = k8s.join("components").join(optional);
            let mut components = vec![extra.as_path()];
            if !has_component {
                components.insert(0, &component);
            }
            out.push(with_components(
                kubectl,
                scratch,
                &overlay,
                namespace,
                &format!("{name}+{optional}"),
                &components,
            )?);
        }
    }
    Ok(out)
}

/// Components an overlay may add that none includes by default (rendered as `{overlay}+{name}`).
pub const OPTIONAL_COMPONENTS: [&str; 1] = ["backup"];

/// `overlay` with `components` added, rendered through a wrapper kustomization in `scratch`
/// (kustomize takes only relative paths; the wrapper sets the overlay's namespace on the
/// components' objects too).
fn with_components(
    kubectl: &Path,
    scratch: &Path,
    overlay: &Path,
    namespace: &str,
    name: &str,
    components: &[&Path],
) -> Result<Rendered, String> {
    let wrapper = scratch.join(name);
    std::fs::create_dir_all(&wrapper).map_err(|e| format!("{}: {e}", wrapper.display()))?;
    let components: Vec<String> = components.iter().map(|c| relative(&wrapper, c)).collect();
    let body = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\nresources: [{}]\ncomponents: [{}]\n",
        relative(&wrapper, overlay),
        components.join(", "),
    );
    std::fs::write(wrapper.join("kustomization.yaml"), body).map_err(|e| e.to_string())?;
    Ok(Rendered {
        name: name.to_string(),
        objects: parse(&render(kubectl, &wrapper)?)?,
    })
}

pub fn render(kubectl: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("running {}: {e}", kubectl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// Every document of a multi-document YAML stream, as JSON values.
pub fn parse(yaml: &str) -> Result<Vec<Value>, String> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).map_err(|e| e.to_string()))
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

pub fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `to` relative to `from` (both absolute).
fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// The environment variables a crate's sources declare with clap's `env = "NAME"`, plus
/// those of referral-common's `GrpcTlsArgs` (GRPC_TLS_*) when the crate flattens it.
pub fn declared_env(crate_dir: &Path) -> Vec<String> {
    let (mut names, flattened) = env_in(&crate_dir.join("src"));
    for (args, dir) in FLATTENED_ARGS {
        if flattened.contains(&args) {
            names.extend(env_in(&repo_root().join(dir)).0);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Argument structs in `common` that binaries flatten into their own, and where they live.
const FLATTENED_ARGS: [(&str, &str); 3] = [
    ("GrpcTlsArgs", "common/src/tls"),
    ("WebTokenArgs", "common/src/auth"),
    ("PiiArgs", "common/src/pii.rs"),
];

/// `env = "NAME"` declarations under `dir` (a directory, or one file), and which of
/// [`FLATTENED_ARGS`] any file there names.
fn env_in(dir: &Path) -> (Vec<String>, Vec<&'static str>) {
    let mut names = Vec::new();
    let mut flattened = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries: Vec<_> = if dir.is_file() {
            vec![dir.clone()]
        } else {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            entries.filter_map(|e| e.ok().map(|e| e.path())).collect()
        };
        for path in entries {
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (args, _) in FLATTENED_ARGS {
                    if text.contains(args) && !flattened.contains(&args) {
                        flattened.push(args);
                    }
                }
                let mut rest = text.as_str();
                while let Some(i) = rest.find("env = \"") {
                    rest = &rest[i + 7..];
                    if let Some(end) = rest.find('"') {
                        names.push(rest[..end].to_string());
                    }
                }
            }
        }
    }
    (names, flattened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(relative(Path::new("/a/b/c"), Path::new("/a/x/y")), "../../x/y");
        assert_eq!(relative(Path::new("/t"), Path::new("/w/k8s")), "../w/k8s");
    }

    #[test]
    fn multi_document_yaml_parses_and_skips_empty_documents() {
        let docs = parse("a: 1\n---\n---\nb: [x]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"][0], "x");
    }
}
