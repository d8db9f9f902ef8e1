//! Whether a network config in the conf dir still makes the runtime run
//! the plugin: then the binary must stay, even with `--remove-binary`
//! (a pod set up from such a config fails its ADD, and every pod's DEL
//! fails, without it).
//!
//! Every config file counts, not only the one the runtime uses first:
//! containerd with `max_conf_num` > 1 and CRI-O load the others too. A
//! file counts when libcni loads it and one of its plugins has our type
//! (read as libcni reads it: `select::plugins`), or when the installer
//! cannot tell what libcni makes of it and it may name us. A file libcni
//! cannot load never runs anything, so it does not hold the binary.

use super::commit::FsError;
use super::entry::PLUGIN_TYPE;
use super::select::plugins::{self, PluginDir};
use super::select::{check_loadable, is_config_name_bytes, ConfFile};
use super::snapshot::Snapshot;
use std::io;
use std::path::Path;

/// One reason the binary stays, with the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The file's path as the runtime finds it.
    pub file: String,
    pub why: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.file, self.why)
    }
}

/// The config files in `conf_dir` that keep the binary on the node. A
/// missing conf dir holds nothing.
pub fn holders(conf_dir: &Path) -> Result<Vec<Holder>, FsError> {
    let snap = match Snapshot::read(conf_dir) {
        Ok(s) => s,
        Err(FsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for file in &snap.files {
        if !is_config_name_bytes(file.sort_key()) {
            continue; // our backups: the runtime does not read them
        }
        let path = conf_dir.join(&file.name).display().to_string();
        out.extend(holds(file).into_iter().map(|why| Holder {
            file: path.clone(),
            why,
        }));
    }
    Ok(out)
}

/// Why `file` keeps the binary, if it does.
fn holds(file: &ConfFile) -> Vec<String> {
    match check_loadable(file) {
        Ok(()) => {}
        Err(why) if why.runtime_fails() => return Vec::new(),
        Err(why) => {
            // Unread, too deep, blocking: the installer cannot tell, so
            // it assumes the worst for a file that may name the plugin.
            let may_name = file.unread.is_some()
                || file
                    .bytes
                    .windows(PLUGIN_TYPE.len())
                    .any(|w| w == PLUGIN_TYPE.as_bytes());
            return match may_name {
                true => vec![format!(
                    "may name {PLUGIN_TYPE} and csum-offload cannot tell what the runtime reads in it ({why})"
                )],
                false => Vec::new(),
            };
        }
    }
    let Some(runs) = plugins::runs(file) else {
        // check_loadable read it; not reading it here would be a bug, and
        // the safe answer to a bug is to keep the binary.
        return vec!["loads in the runtime but csum-offload cannot list its plugins".to_string()];
    };
    let mut out = Vec::new();
    if runs.types.iter().any(|t| t == PLUGIN_TYPE) {
        out.push(format!(
            "names {PLUGIN_TYPE} (a plugin of type {PLUGIN_TYPE:?})"
        ));
    }
    // libcni 1.3 and later append the `*.conf` files of
    // `<conf dir>/<name>/` to a conflist's plugins (the snapshot read
    // them; a plugin dir that fails the list failed check_loadable).
    if let Some(PluginDir::Plugins(found)) = &file.plugin_dir {
        out.extend(
            found
                .iter()
                .filter(|p| p.plugin_type == PLUGIN_TYPE)
                .map(|p| {
                    format!(
                        "loads {} as a further plugin, of type {PLUGIN_TYPE:?}",
                        p.path.display()
                    )
                }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn tmp(tag: &str) -> std::path::PathBuf {
        crate::unit_dirs::fresh("in-use", tag)
    }

    fn names(hs: &[Holder]) -> Vec<String> {
        hs.iter()
            .map(|h| {
                Path::new(&h.file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn which_files_hold_the_binary() {
        let d = tmp("files");
        let list = |name: &str, plugins: &str| {
            format!(r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[{plugins}]}}"#)
        };
        let w = |n: &str, t: &str| fs::write(d.join(n), t).unwrap();
        // Not the first file, and hand-written: still holds.
        w("10-a.conflist", &list("a", r#"{"type":"ptp"}"#));
        w(
            "20-b.conflist",
            &list("b", r#"{"type":"ptp"},{"type":"csum-offload"}"#),
        );
        // Names us, but libcni cannot load it: holds nothing.
        w("30-c.conflist", r#"{"plugins":[{"type":"csum-offload"}]}"#);
        // A .conf whose type, once libcni sorts the keys, is ours.
        w(
            "40-d.conf",
            r#"{"name":"d","type":"csum-offload","Type":"bridge"}"#,
        );
        // Not a config name.
        w(
            "50-e.conflist.bak",
            &list("e", r#"{"type":"csum-offload"}"#),
        );
        assert_eq!(names(&holders(&d).unwrap()), ["20-b.conflist", "40-d.conf"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn plugin_dirs_and_files_it_cannot_judge() {
        let d = tmp("dirs");
        fs::write(
            d.join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        assert!(holders(&d).unwrap().is_empty());
        fs::create_dir(d.join("net")).unwrap();
        fs::write(d.join("net/90-x.conf.off"), r#"{"type":"csum-offload"}"#).unwrap();
        assert!(holders(&d).unwrap().is_empty());
        fs::write(d.join("net/90-x.conf"), r#"{"type":"csum-offload"}"#).unwrap();
        let h = holders(&d).unwrap();
        assert_eq!(names(&h), ["10-a.conflist"], "{h:?}");
        assert!(h[0].why.contains("net/90-x.conf"), "{h:?}");
        fs::remove_dir_all(d.join("net")).unwrap();
        // A symlink out of the conf dir that does not resolve here: the
        // runtime may see a file there.
        symlink("/nonexistent-csum/x.conflist", d.join("20-b.conflist")).unwrap();
        let h = holders(&d).unwrap();
        assert_eq!(names(&h), ["20-b.conflist"], "{h:?}");
        assert!(h[0].why.contains("cannot tell"), "{h:?}");
        fs::remove_dir_all(&d).unwrap();
        assert!(holders(&d).unwrap().is_empty());
    }
}
