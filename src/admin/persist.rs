//! `admin.persist: true`: an admin change written back to the config file, keeping the body
//! as sent. A change that cannot be written back faithfully is refused as a whole (422, nothing
//! applied): a file with custom YAML tags (`!include`, `!secret`) or one that did not parse as a
//! plain document, or a written document that would not reload to the same config. The file is
//! written as a temp file created exclusively in the same directory with the original mode (and
//! owner, when running as root), fsynced, renamed over the original, and the directory fsynced.
//! Comments and formatting of the file are not kept.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::Kind;
use crate::app::Source;
use crate::config::{self, Config};
use crate::error::ApiError;

/// Apply `edit` to the document as written and, with `admin.persist`, write it back. A change
/// that cannot be written back faithfully is refused (422) and nothing is applied.
pub(super) fn persist(
    cfg: &Config,
    source: &mut Source,
    edit: impl FnOnce(&mut Value),
) -> Result<(), ApiError> {
    let mut doc = source.document.clone();
    edit(&mut doc);
    if let (true, Some(path)) = (cfg.admin.persist, source.path.as_deref()) {
        let refuse = |why: String| {
            ApiError::unprocessable(format!(
                "change not applied: admin.persist cannot write {} back faithfully: {why}",
                path.display()
            ))
            .with_code("persist_refused")
        };
        if let Some(why) = &source.persist_blocker {
            return Err(refuse(why.clone()));
        }
        let text = render(&doc).map_err(|e| refuse(e.to_string()))?;
        // The file we write must load to exactly the config we are about to run.
        match config::parse(&text, &path.display().to_string(), source.env.as_ref()) {
            Ok(reloaded) if reloaded == *cfg => {}
            Ok(_) => {
                return Err(refuse(
                    "the written file would load to a different config".into(),
                ));
            }
            Err(e) => {
                return Err(refuse(format!(
                    "the written file would not load: {}",
                    e.problems.join("; ")
                )));
            }
        }
        write_atomically(path, &text).map_err(|e| {
            ApiError::internal(format!(
                "change not applied: cannot write {}: {e}",
                path.display()
            ))
        })?;
    }
    source.document = doc;
    Ok(())
}

/// Set (or remove, with `None`) one entry in the raw config document.
pub(super) fn set_entry(doc: &mut Value, kind: Kind, name: &str, body: Option<Value>) {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let key = match kind {
        Kind::Assistant => "assistants",
        Kind::Backend => "backends",
        Kind::Mcp => "mcp_servers",
    };
    let section = &mut doc[key];
    if kind == Kind::Assistant {
        if !section.is_array() {
            *section = Value::Array(vec![]);
        }
        let Value::Array(list) = section else { return };
        let pos = list
            .iter()
            .position(|a| a.get("name").and_then(Value::as_str) == Some(name));
        match (body, pos) {
            (Some(mut b), Some(i)) => {
                b["name"] = json!(name);
                list[i] = b;
            }
            (Some(mut b), None) => {
                b["name"] = json!(name);
                list.push(b);
            }
            (None, Some(i)) => {
                list.remove(i);
            }
            (None, None) => {}
        }
    } else {
        if !section.is_object() {
            *section = Value::Object(Map::new());
        }
        let Value::Object(map) = section else { return };
        match body {
            Some(mut b) => {
                if let Some(o) = b.as_object_mut() {
                    o.remove("name");
                }
                map.insert(name.to_string(), b);
            }
            None => {
                map.remove(name);
            }
        }
    }
}

/// The document as YAML text, as `admin.persist` writes it.
fn render(doc: &Value) -> Result<String, serde_yaml::Error> {
    let text = serde_yaml::to_string(doc)?;
    Ok(format!(
        "# Written by aiproxy's admin API (admin.persist: true); comments are not kept.\n{text}"
    ))
}

/// Replace `path` with `text` so that readers never see half a file and a crash leaves either
/// the old or the new file: a temp file created exclusively (`O_EXCL`) in the same directory
/// with the original's mode (and owner, when running as root), written and fsynced, renamed
/// over the original, then the directory fsynced.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.yaml".into());
    let tmp = dir.join(format!(".{file_name}.aiproxy-tmp.{}", std::process::id()));
    // A stale temp file of ours (a crash mid-write) is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set exactly the original.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if crate::sys::process::is_root() {
            std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_entry_upserts_and_removes_keeping_references() {
        let mut doc = json!({"assistants": [{"name": "a", "backend": "x"}], "backends": {"x": {"api_key": "${KEY}"}}});
        set_entry(
            &mut doc,
            Kind::Assistant,
            "b",
            Some(json!({"backend": "x", "model": "m"})),
        );
        set_entry(
            &mut doc,
            Kind::Assistant,
            "a",
            Some(json!({"backend": "y"})),
        );
        set_entry(
            &mut doc,
            Kind::Backend,
            "y",
            Some(json!({"base_url": "http://h", "api_key": "${OTHER}"})),
        );
        assert_eq!(
            doc["assistants"],
            json!([{"name": "a", "backend": "y"}, {"backend": "x", "model": "m", "name": "b"}])
        );
        assert_eq!(doc["backends"]["y"]["api_key"], "${OTHER}");
        set_entry(&mut doc, Kind::Backend, "x", None);
        set_entry(&mut doc, Kind::Assistant, "a", None);
        assert!(doc["backends"].get("x").is_none());
        assert_eq!(doc["assistants"].as_array().unwrap().len(), 1);
        let mut empty = Value::Null;
        set_entry(&mut empty, Kind::Mcp, "m", Some(json!({"command": "c"})));
        assert_eq!(empty, json!({"mcp_servers": {"m": {"command": "c"}}}));
    }
}
