//! What a build asks for (the query of `POST /builds`: `tag` (repeatable),
//! `file`, `build-arg` `K=V` (repeatable), `target`, `platform`), read and
//! checked against its Workspace before anything is created: every tag
//! within `spec.build.registries`, names and values that BuildKit takes as
//! they are.

use crate::crd::Workspace;

/// The most tags, build arguments and bytes of one argument a build takes.
const MAX_TAGS: usize = 8;
const MAX_ARGS: usize = 64;
const MAX_VALUE: usize = 4096;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildRequest {
    /// Full references (`registry.example.com/team/app:1`), a tag always
    /// given (`latest` when the caller named none).
    pub tags: Vec<String>,
    /// The Containerfile, relative to the context.
    pub file: String,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub platform: Option<String>,
}

impl BuildRequest {
    /// The request in `query`, or why it cannot be built as asked.
    pub fn parse(query: &str) -> Result<BuildRequest, String> {
        let mut r = BuildRequest {
            file: "Dockerfile".into(),
            ..Default::default()
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            if value.len() > MAX_VALUE || value.contains(['\n', '\r', '\0']) {
                return Err(format!(
                    "{key} is longer than {MAX_VALUE} bytes or has a line break"
                ));
            }
            match key.as_ref() {
                "tag" => r.tags.push(reference(&value)?),
                "file" => r.file = relative_path(&value)?,
                "build-arg" => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("build-arg {value:?} is not KEY=VALUE"))?;
                    let name_ok = k
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !name_ok {
                        return Err(format!(
                            "build-arg name {k:?} is not a name (letters, digits, _)"
                        ));
                    }
                    r.build_args.push((k.into(), v.into()));
                }
                "target" => r.target = Some(simple_name(&value, "target")?),
                "platform" => r.platform = Some(platform(&value)?),
                other => {
                    return Err(format!(
                        "unknown build option {other:?} (tag, file, build-arg, target, platform)"
                    ))
                }
            }
        }
        if r.tags.is_empty() {
            return Err("name the image to push: tag=REGISTRY/REPOSITORY[:TAG]".into());
        }
        if r.tags.len() > MAX_TAGS || r.build_args.len() > MAX_ARGS {
            return Err(format!(
                "at most {MAX_TAGS} tags and {MAX_ARGS} build arguments"
            ));
        }
        Ok(r)
    }

    /// Whether `ws` lets every tag be pushed, or which one it does not.
    pub fn allowed_by(&self, ws: &Workspace) -> Result<(), String> {
        let registries = &ws.spec.build.registries;
        if registries.is_empty() {
            return Err(
                "this workspace may push nowhere: its spec.build.registries is empty".into(),
            );
        }
        for tag in &self.tags {
            let repository = repository_of(tag);
            let ok = registries
                .iter()
                .any(|allowed| match allowed.strip_suffix('/') {
                    Some(_) => repository.starts_with(allowed.as_str()),
                    None => repository == allowed,
                });
            if !ok {
                return Err(format!(
                    "{repository} is not a repository this workspace may push to ({})",
                    registries.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// A reference without its tag.
pub fn repository_of(reference: &str) -> &str {
    let slash = reference.rfind('/').unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(colon) => &reference[..slash + colon],
        None => reference,
    }
}

/// The registry host of a reference (its first part).
pub fn registry_of(reference: &str) -> &str {
    reference.split('/').next().unwrap_or_default()
}

/// `REGISTRY/REPOSITORY[:TAG]` with a registry host (a `.` or `:` in the
/// first part, or `localhost`): lower-case repository parts, a tag of
/// letters, digits and `._-`. Returns it with `:latest` when it had none.
fn reference(s: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("{s:?} is not an image to push: {why}"));
    let Some((host, rest)) = s.split_once('/') else {
        return bad("write REGISTRY/REPOSITORY[:TAG], e.g. registry.example.com/team/app:1");
    };
    if !(host.contains('.') || host.contains(':') || host == "localhost")
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:-".contains(c))
    {
        return bad("it must start with a registry host (registry.example.com/…)");
    }
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (rest, None),
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && p.starts_with(|c: char| c.is_ascii_alphanumeric())
    };
    if !path.split('/').all(part_ok) {
        return bad("repository names are lower-case letters, digits and ._- parts joined by /");
    }
    let tag = tag.unwrap_or("latest");
    if tag.is_empty()
        || tag.len() > 128
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return bad("a tag is up to 128 letters, digits and ._-");
    }
    Ok(format!("{host}/{path}:{tag}"))
}

fn relative_path(s: &str) -> Result<String, String> {
    if s.is_empty() || s.starts_with('/') || s.split('/').any(|p| p == "..") || s.len() > 255 {
        return Err(format!("file {s:?} must be a path inside the context"));
    }
    Ok(s.into())
}

fn simple_name(s: &str, what: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!("{what} {s:?} must be letters, digits and ._-"));
    }
    Ok(s.into())
}

fn platform(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !ok {
        return Err(format!(
            "platform {s:?} must be OS/ARCH[/VARIANT], e.g. linux/amd64"
        ));
    }
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::test_support::workspace;
    use serde_json::json;

    #[test]
    fn a_build_is_read_from_its_query() {
        let r = BuildRequest::parse(
            "tag=registry.example.com/team/app&tag=registry.example.com:5000/team/app:1.2\
             &file=build/Containerfile&build-arg=VERSION%3D1%3D2&target=prod&platform=linux/amd64",
        )
        .unwrap();
        assert_eq!(
            r.tags,
            [
                "registry.example.com/team/app:latest",
                "registry.example.com:5000/team/app:1.2"
            ]
        );
        assert_eq!(r.file, "build/Containerfile");
        assert_eq!(r.build_args, [("VERSION".to_string(), "1=2".to_string())]);
        assert_eq!(
            (r.target.as_deref(), r.platform.as_deref()),
            (Some("prod"), Some("linux/amd64"))
        );
        assert_eq!(
            BuildRequest::parse("tag=r.io/a").unwrap().file,
            "Dockerfile"
        );
    }

    #[test]
    fn what_buildkit_would_misread_is_refused_with_the_reason() {
        for (query, says) in [
            ("", "name the image"),
            ("tag=app:1", "REGISTRY/REPOSITORY"),
            ("tag=team/app:1", "registry host"),
            ("tag=r.io/Team/app", "lower-case"),
            ("tag=r.io/team/app:", "tag is"),
            ("tag=r.io/a&file=../secret", "inside the context"),
            ("tag=r.io/a&file=/etc/passwd", "inside the context"),
            ("tag=r.io/a&build-arg=NOVALUE", "KEY=VALUE"),
            ("tag=r.io/a&build-arg=1X%3D1", "not a name"),
            ("tag=r.io/a&target=a%20b", "target"),
            ("tag=r.io/a&platform=linux", "OS/ARCH"),
            ("tag=r.io/a&push=false", "unknown build option"),
            ("tag=r.io/a&build-arg=A%3D1%0Ab", "line break"),
        ] {
            let err = BuildRequest::parse(query).unwrap_err();
            assert!(err.contains(says), "{query}: {err}");
        }
    }

    #[test]
    fn tags_must_be_within_the_workspaces_registries() {
        let ws = workspace(
            "alice",
            json!({"owner": {"name": "alice"},
                   "build": {"registries": ["r.io/team/", "other.io/solo"]}}),
        );
        let req = |tag: &str| BuildRequest::parse(&format!("tag={tag}")).unwrap();
        assert!(req("r.io/team/app:1").allowed_by(&ws).is_ok());
        assert!(req("r.io/team/deep/app").allowed_by(&ws).is_ok());
        assert!(req("other.io/solo:2").allowed_by(&ws).is_ok());
        for outside in [
            "r.io/teammate/app",
            "r.io/other/app",
            "other.io/solo2",
            "evil.io/team/app",
        ] {
            let err = req(outside).allowed_by(&ws).unwrap_err();
            assert!(
                err.contains("not a repository this workspace may push to"),
                "{err}"
            );
        }
        let none = workspace("bob", json!({"owner": {"name": "bob"}}));
        assert!(req("r.io/team/app")
            .allowed_by(&none)
            .unwrap_err()
            .contains("registries is empty"));
        assert_eq!(repository_of("r.io:5000/team/app:1"), "r.io:5000/team/app");
        assert_eq!(registry_of("r.io:5000/team/app:1"), "r.io:5000");
    }
}
