//! Image → local executable mapping, loaded from a small YAML file.
//!
//! ```yaml
//! images:
//!   - image: "auren/runtime:*"        # exact name, or a prefix ending in `*`
//!     entrypoint: ["${CARGO_TARGET_DIR}/debug/auren-runtime"]
//!     args: []                         # default args (Docker CMD)
//!     env: {}                          # extra env for the process
//! ```
//! `${VAR}` in `entrypoint`/`args`/`env` is replaced from the agent's own
//! environment when the file is loaded. `$(VAR)` is Kubernetes' own expansion
//! from the container's env, applied when the process starts.
//! A pod's `command` replaces the entrypoint and its `args` replace the default
//! args, as with a container runtime. The image tag is exposed to the process as
//! `AUREN_RELEASE` unless the container sets it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(default)]
    pub images: Vec<ImageRule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ImageRule {
    pub image: String,
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// What an image resolves to on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedImage {
    pub entrypoint: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub tag: Option<String>,
}

impl ImageConfig {
    /// Reads the file and expands `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, |k| std::env::var(k).ok()).map_err(|source| Error::ImageConfig {
            path: path.to_owned(),
            source,
        })
    }

    pub fn parse(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, serde_yaml::Error> {
        let mut config: ImageConfig = serde_yaml::from_str(text)?;
        for rule in &mut config.images {
            for s in rule.entrypoint.iter_mut().chain(rule.args.iter_mut()) {
                *s = expand_braced(s, &lookup);
            }
            for v in rule.env.values_mut() {
                *v = expand_braced(v, &lookup);
            }
        }
        Ok(config)
    }

    /// The first rule matching `image`, or None (reported as ErrImagePull).
    pub fn resolve(&self, image: &str) -> Option<ResolvedImage> {
        let rule = self
            .images
            .iter()
            .find(|r| pattern_matches(&r.image, image))?;
        Some(ResolvedImage {
            entrypoint: rule.entrypoint.clone(),
            args: rule.args.clone(),
            env: rule.env.clone(),
            tag: image_tag(image).map(str::to_owned),
        })
    }
}

fn pattern_matches(pattern: &str, image: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => image.starts_with(prefix),
        None => pattern == image,
    }
}

/// The tag of an image reference (`repo/name:tag@digest` → `tag`).
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let name_start = without_digest.rfind('/').map_or(0, |i| i + 1);
    let last = &without_digest[name_start..];
    last.split_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.is_empty())
}

/// argv of a container: pod command/args override entrypoint/default args.
pub fn build_argv(
    command: &[String],
    args: Option<&[String]>,
    image: &ResolvedImage,
) -> Vec<String> {
    let (mut argv, default_args) = if command.is_empty() {
        (image.entrypoint.clone(), image.args.as_slice())
    } else {
        (command.to_vec(), &[][..])
    };
    argv.extend(args.unwrap_or(default_args).iter().cloned());
    argv
}

fn expand_braced(s: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&lookup(&after[..end]).unwrap_or_default());
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
images:
  - image: "auren/runtime:*"
    entrypoint: ["${TARGET}/debug/auren-runtime"]
  - image: "auren/http-stub:latest"
    entrypoint: ["python3", "-m", "http.server"]
    args: ["--bind", "$(POD_IP)", "8080"]
    env: { A: "${MISSING}x" }
"#;

    fn config() -> ImageConfig {
        ImageConfig::parse(YAML, |k| (k == "TARGET").then(|| "/t".to_owned())).unwrap()
    }

    #[test]
    fn wildcard_rule_matches_prefix_and_exposes_tag() {
        let r = config().resolve("auren/runtime:1.4.2").unwrap();
        assert_eq!(r.entrypoint, vec!["/t/debug/auren-runtime"]);
        assert_eq!(r.tag.as_deref(), Some("1.4.2"));
    }

    #[test]
    fn exact_rule_needs_exact_name_and_unknown_images_fail() {
        let c = config();
        assert!(c.resolve("auren/http-stub:latest").is_some());
        assert!(c.resolve("auren/http-stub:v2").is_none());
        assert!(c.resolve("nginx:1.25").is_none());
        assert_eq!(c.resolve("auren/http-stub:latest").unwrap().env["A"], "x");
    }

    #[test]
    fn tags_ignore_registry_ports_and_digests() {
        assert_eq!(image_tag("localhost:5000/app"), None);
        assert_eq!(image_tag("localhost:5000/app:v1@sha256:ab"), Some("v1"));
        assert_eq!(image_tag("app"), None);
    }

    #[test]
    fn command_and_args_override_like_a_runtime() {
        let img = config().resolve("auren/http-stub:latest").unwrap();
        assert_eq!(build_argv(&[], None, &img).len(), 6);
        let args = vec!["9000".to_owned()];
        assert_eq!(
            build_argv(&[], Some(&args), &img),
            vec!["python3", "-m", "http.server", "9000"]
        );
        let cmd = vec!["sh".to_owned(), "-c".to_owned()];
        let script = vec!["exit 3".to_owned()];
        assert_eq!(
            build_argv(&cmd, Some(&script), &img),
            vec!["sh", "-c", "exit 3"]
        );
        assert_eq!(build_argv(&cmd, None, &img), vec!["sh", "-c"]);
    }
}
