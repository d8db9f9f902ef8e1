//! Which plugins libcni runs from a config file it loads: the types of the
//! plugin configs as libcni decodes them (see netconf.rs), and, for a
//! `.conflist`, where libcni 1.3 finds more of them.
//!
//! Both runtimes turn a single-plugin file into a list with libcni's
//! ConfListFromConf, which decodes the plugin again from a Go map (keys
//! sorted), so its type is the one of that second decode; a conflist's
//! plugins are decoded from Go maps too. That is `Members::of`.

use super::netconf::{self, Members};
use super::{extension, gojson, ConfFile};
use crate::fsread;
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a loadable file makes libcni run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Runs {
    /// Each inline plugin's type, in order.
    pub types: Vec<String>,
    /// For a conflist that does not set `loadOnlyInlinedPlugins`: the
    /// network's name, whose `<conf dir>/<name>/*.conf` files libcni 1.3
    /// and later append as further plugins.
    pub plugin_dir: Option<String>,
}

/// The plugins libcni runs from `file`, which `check_loadable` accepted;
/// `None` if it cannot be read as such a file after all.
pub fn runs(file: &ConfFile) -> Option<Runs> {
    let value = gojson::parse(&file.bytes).ok()?;
    let obj = value.as_object()?;
    if extension(&file.name) != Some("conflist") {
        let t = Members::of(&value)?.string_field("type")?.to_string();
        return Some(Runs {
            types: vec![t],
            plugin_dir: None,
        });
    }
    let types = obj
        .get("plugins")?
        .as_array()?
        .iter()
        .filter_map(|p| Some(Members::of(p)?.string_field("type")?.to_string()))
        .collect();
    // libcni reads the flag from a Go map: the exact key, a bool or the
    // strings "true"/"false" in any case.
    let inlined_only = match obj.get("loadOnlyInlinedPlugins") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let plugin_dir = match (inlined_only, obj.get("name")) {
        (false, Some(Value::String(name))) => Some(name.clone()),
        _ => None,
    };
    Some(Runs { types, plugin_dir })
}

/// What libcni 1.3 and later find in a conflist's plugin dir,
/// `<conf dir>/<name>/*.conf` (`NetworkPluginConfsFromFiles`), and
/// append to the list's own plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginDir {
    /// No such directory: the list runs its own plugins only.
    Absent,
    /// The plugins appended after the list's own, in libcni's order (by
    /// file name); empty for a directory with no `*.conf`.
    Plugins(Vec<DirPlugin>),
    /// The installer cannot tell whether libcni loads a plugin file there.
    Unjudged(String),
    /// libcni's load of the whole list fails on the directory: it cannot
    /// be listed (the name is a file, holds a NUL, ...), or a `*.conf` in
    /// it cannot be read or decoded, or has no type.
    Fails(String),
}

/// One plugin file of a plugin dir, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPlugin {
    pub path: PathBuf,
    pub plugin_type: String,
}

/// The most plugin files the installer reads from one plugin dir; past
/// that it says the load fails rather than read without bound.
const MAX_PLUGIN_FILES: usize = 256;
/// The largest plugin file read, as for the conf dir's own files.
const MAX_PLUGIN_FILE_BYTES: u64 = 1 << 20;

/// Go's filepath.Join(dir, name): the two joined by "/" and cleaned
/// lexically, so that "" and "." are the conf dir itself, ".." its parent
/// and an absolute name stays under the conf dir.
pub fn go_join(dir: &Path, name: &str) -> PathBuf {
    let joined = [dir.as_os_str().as_bytes(), b"/", name.as_bytes()].concat();
    let absolute = joined.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in joined.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(part),
            },
            _ => parts.push(part),
        }
    }
    let mut out = parts.join(&b'/');
    if absolute {
        out.insert(0, b'/');
    } else if out.is_empty() {
        out.push(b'.');
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// Reads `<conf dir>/<name>/` as libcni does: ConfFiles (entries that are
/// not directories, ending in ".conf", in name order), each read and
/// decoded as one plugin config that needs a type. Never blocks: a FIFO
/// there is reported as a failure (libcni would wait on it forever).
pub fn read_plugin_dir(conf_dir: &Path, name: &str) -> PluginDir {
    let dir = go_join(conf_dir, name);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PluginDir::Absent,
        Err(e) => {
            return PluginDir::Fails(format!(
                "libcni cannot list its plugin dir {}: {e}",
                dir.display()
            ))
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return PluginDir::Fails(format!("listing {}: {e}", dir.display())),
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let fname = entry.file_name();
        let raw = fname.as_bytes();
        // filepath.Ext: from the last dot of the name.
        if raw.iter().rposition(|&b| b == b'.').map(|i| &raw[i..]) == Some(b".conf") {
            names.push(fname);
        }
    }
    if names.len() > MAX_PLUGIN_FILES {
        return PluginDir::Fails(format!(
            "its plugin dir {} holds more than {MAX_PLUGIN_FILES} *.conf files",
            dir.display()
        ));
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut found = Vec::new();
    for fname in names {
        let path = dir.join(&fname);
        let bytes = match fsread::read_regular(&path, MAX_PLUGIN_FILE_BYTES) {
            Ok(b) => b,
            Err(e) => return PluginDir::Fails(format!("{}: {e}", path.display())),
        };
        let members: Members = match gojson::parse_as(&bytes) {
            Ok(m) => m,
            // libcni decodes a plugin file into its NetConf struct only,
            // so Go fails on a number out of float64 range only inside a
            // field it knows (found by the conf dir fuzz run); which one
            // it is in, csum-offload does not follow.
            Err(gojson::GoJsonError::NumberRange(at)) => {
                return PluginDir::Unjudged(format!(
                    "{}: a number out of float64 range at byte {at}: Go skips it in a field libcni \
                     does not decode and fails on it in one it does, and csum-offload cannot tell which",
                    path.display()
                ))
            }
            Err(e) if !e.runtime_fails() => {
                return PluginDir::Unjudged(format!("{}: {e}", path.display()))
            }
            Err(e) => return PluginDir::Fails(format!("{}: invalid JSON: {e}", path.display())),
        };
        let why = match netconf::check(&members) {
            Ok(()) => match members.string_field("type") {
                Some(t) if !t.is_empty() => {
                    found.push(DirPlugin {
                        plugin_type: t.to_string(),
                        path,
                    });
                    continue;
                }
                _ => "no plugin \"type\"".to_string(),
            },
            Err(netconf::Undecodable::Invalid(why)) => why,
            Err(netconf::Undecodable::NoType) => "no plugin \"type\"".to_string(),
        };
        return PluginDir::Fails(format!("{}: {why}", path.display()));
    }
    PluginDir::Plugins(found)
}

/// The type of a plugin config file in a network's plugin dir: libcni
/// decodes it straight from the file (NetworkPluginConfFromBytes), so
/// keys in file order, the last one wins.
pub fn plugin_file_type(bytes: &[u8]) -> Option<String> {
    let members: Members = gojson::parse_as(bytes).ok()?;
    members.string_field("type").map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_of(name: &str, text: &str) -> Option<Runs> {
        runs(&ConfFile::new(name, text.as_bytes()))
    }

    #[test]
    fn types_as_libcni_decodes_them() {
        let list = runs_of(
            "10-a.conflist",
            r#"{"name":"n","plugins":[{"type":"ptp"},{"Type":"x","type":"csum-offload"},{"TYPE":"tuning"}]}"#,
        )
        .unwrap();
        assert_eq!(list.types, ["ptp", "csum-offload", "tuning"]);
        assert_eq!(list.plugin_dir.as_deref(), Some("n"));
        // A .conf's type is the one after the keys are sorted: "Type"
        // comes before "type", so "type" wins whatever the file's order.
        let conf = runs_of("10-a.conf", r#"{"type":"csum-offload","Type":"bridge"}"#).unwrap();
        assert_eq!(conf.types, ["csum-offload"]);
        assert_eq!(conf.plugin_dir, None);
        for flag in ["true", r#""TRUE""#] {
            let text = format!(
                r#"{{"name":"n","loadOnlyInlinedPlugins":{flag},"plugins":[{{"type":"ptp"}}]}}"#
            );
            assert_eq!(runs_of("a.conflist", &text).unwrap().plugin_dir, None);
        }
        assert_eq!(
            plugin_file_type(br#"{"type":"csum-offload","Type":"bridge"}"#).as_deref(),
            Some("bridge")
        );
        assert_eq!(runs_of("a.conflist", "{"), None);
    }

    #[test]
    fn plugin_dir_path_as_go_joins_it() {
        let d = Path::new("/etc/cni/net.d");
        for (name, want) in [
            ("net", "/etc/cni/net.d/net"),
            ("", "/etc/cni/net.d"),
            (".", "/etc/cni/net.d"),
            ("..", "/etc/cni"),
            ("/abs", "/etc/cni/net.d/abs"),
            ("a/../b/", "/etc/cni/net.d/b"),
            ("../../../../x", "/x"),
        ] {
            assert_eq!(go_join(d, name), PathBuf::from(want), "{name:?}");
        }
        assert_eq!(go_join(Path::new("rel"), ".."), PathBuf::from("."));
    }

    #[test]
    fn plugin_dir_read_as_libcni_reads_it() {
        let root = std::env::temp_dir().join(format!("csum-plugindir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("net/sub.conf")).unwrap();
        assert_eq!(read_plugin_dir(&root, "none"), PluginDir::Absent);
        std::fs::write(root.join("net/20-b.conf"), br#"{"type":"tuning"}"#).unwrap();
        std::fs::write(
            root.join("net/10-a.conf"),
            br#"{"Type":"x","type":"portmap"}"#,
        )
        .unwrap();
        std::fs::write(root.join("net/30-c.conflist"), b"{").unwrap();
        let PluginDir::Plugins(found) = read_plugin_dir(&root, "net") else {
            panic!("not read")
        };
        let types: Vec<&str> = found.iter().map(|p| p.plugin_type.as_str()).collect();
        assert_eq!(types, ["portmap", "tuning"]);
        assert_eq!(found[0].path, root.join("net/10-a.conf"));
        // "" is the conf dir itself: its own *.conf files become plugins.
        std::fs::write(root.join("05-x.conf"), b"").unwrap();
        assert!(matches!(read_plugin_dir(&root, ""), PluginDir::Fails(_)));
        // Go skips an unknown field's number however large, and fails on
        // one in a field it decodes: not judged.
        std::fs::write(
            root.join("net/20-b.conf"),
            br#"{"type":"tuning","x":1e400}"#,
        )
        .unwrap();
        assert!(
            matches!(read_plugin_dir(&root, "net"), PluginDir::Unjudged(w) if w.contains("float64"))
        );
        std::fs::write(root.join("05-x.conf"), br#"{"name":"n"}"#).unwrap();
        assert!(matches!(read_plugin_dir(&root, "."), PluginDir::Fails(w) if w.contains("type")));
        // A name that is a file, or holds a NUL, fails the load.
        std::fs::write(root.join("file"), b"").unwrap();
        assert!(matches!(
            read_plugin_dir(&root, "file"),
            PluginDir::Fails(_)
        ));
        assert!(matches!(
            read_plugin_dir(&root, "a\0b"),
            PluginDir::Fails(_)
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
