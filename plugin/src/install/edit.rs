//! Edits of the node's network configs as pure functions from file
//! contents to the steps that make them, so every case is unit-tested
//! without touching a directory.

use super::entry::{Entry, MANAGED_BY, MANAGED_KEY, PLUGIN_TYPE};
use super::select::netconf::Members;
use super::select::plugins::PluginDir;
use super::select::{
    extension, gojson, is_config_name, libcni_version, ConfFile, VersionListError,
};
use crate::spec_versions;
use serde_json::{Map, Value};

/// Suffix of the file that keeps a converted `.conf`/`.json` until removal.
/// It must not end in a config extension, or runtimes would load it.
pub const BACKUP_SUFFIX: &str = ".csum-offload-backup";

/// One file operation; a plan runs them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Atomically replace (or create) `name`, keeping the mode of
    /// `mode_from` (the file itself, or the one it was converted from).
    Write {
        name: String,
        bytes: Vec<u8>,
        mode_from: String,
    },
    /// Atomically rename; used to set a converted file aside and back.
    Rename {
        from: String,
        to: String,
    },
    Remove {
        name: String,
    },
}

/// Why the entry cannot go into the primary file. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{file}: cniVersion {version}{how} is not supported by csum-offload (supported: {}); the runtime would fail every pod with this chain, so the entry is not added", spec_versions::SUPPORTED.join(", "))]
    UnsupportedVersion {
        file: String,
        version: String,
        /// Which runtimes run the chain at this version.
        how: &'static str,
    },
    #[error("{file}: cannot convert it to {target}: that file exists and is not ours; move one of them away")]
    TargetExists { file: String, target: String },
    #[error("{file}: {why}")]
    Unreadable { file: String, why: String },
    /// libcni 1.3 and later run the plugins of `<conf dir>/<name>/*.conf`
    /// after the list's own, so an entry added to the list would not run
    /// last.
    #[error("{file}: the runtime (libcni 1.3 and later) runs the plugins in the {name:?} directory beside it after the list's own ({}), so an entry added to the list would not run last; csum-offload does not edit such a list (move those plugins into the list, or set \"loadOnlyInlinedPlugins\": true)", types.join(", "))]
    PluginDirAfter {
        file: String,
        name: String,
        types: Vec<String>,
    },
    /// libcni refuses the list's `cniVersion`/`cniVersions`.
    #[error("{file}: {source}")]
    VersionList {
        file: String,
        source: VersionListError,
    },
}

/// Whether a plugin is a csum-offload entry, whoever wrote it.
fn is_csum(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

/// Whether a plugin is an entry the installer wrote: it carries the mark.
pub fn is_installed(plugin: &Value) -> bool {
    is_csum(plugin) && plugin.get(MANAGED_KEY).and_then(Value::as_str) == Some(MANAGED_BY)
}

/// Which csum-offload entries `insert_as` treats as the installer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// Only marked ones; an unmarked one is hand-written and left alone.
    Marked,
    /// Unmarked ones too: adopting the entry of an installer from before
    /// the mark (it wrote every entry without one), once, at an upgrade.
    AlsoUnmarked,
}

/// The plugins of a list that are not the installer's.
fn others(plugins: &[Value]) -> Vec<&Value> {
    plugins.iter().filter(|p| !is_installed(p)).collect()
}

/// The csum-offload entries in a config that the installer did not write.
pub fn hand_written(file: &ConfFile) -> Vec<Value> {
    let Some(value) = parse(&file.bytes) else {
        return Vec::new();
    };
    let plugins = match value.get("plugins").and_then(Value::as_array) {
        Some(p) => p.clone(),
        None => vec![value],
    };
    plugins
        .into_iter()
        .filter(|p| is_csum(p) && !is_installed(p))
        .collect()
}

/// Pretty JSON with a final newline: the one format we write.
pub fn render(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A config file's JSON as the runtime reads it (Go's encoding/json).
fn parse(bytes: &[u8]) -> Option<Value> {
    gojson::parse(bytes).ok()
}

fn parse_object(file: &ConfFile) -> Result<Map<String, Value>, EditError> {
    match gojson::parse(&file.bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EditError::Unreadable {
            file: file.name.clone(),
            why: "not a JSON object".into(),
        }),
        Err(e) => Err(EditError::Unreadable {
            file: file.name.clone(),
            why: e.to_string(),
        }),
    }
}

/// The versions runtimes may run the chain at, each of which the plugin
/// must speak: libcni 1.2 and later choose from `cniVersions` the way
/// `libcni_version` does (versions newer than libcni's own are skipped),
/// older libcni (containerd 1.x) ignores `cniVersions` and uses
/// `cniVersion`.
fn check_chain_versions(file: &str, list: &Map<String, Value>) -> Result<(), EditError> {
    let chosen = libcni_version(list).map_err(|source| EditError::VersionList {
        file: file.to_string(),
        source,
    })?;
    let plain = list
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let how_chosen = match list.contains_key("cniVersions") {
        true => " (chosen from cniVersions, as libcni 1.2 and later do)",
        false => "",
    };
    let checks = [
        (chosen.as_str(), how_chosen),
        (
            plain,
            " (what runtimes with libcni before 1.2 run the chain at)",
        ),
    ];
    for (v, how) in checks {
        if spec_versions::supported(v).is_none() {
            return Err(EditError::UnsupportedVersion {
                file: file.to_string(),
                version: if v.is_empty() {
                    "(none)".into()
                } else {
                    format!("{v:?}")
                },
                how,
            });
        }
    }
    Ok(())
}

/// The steps that put `entry` into the primary file. No steps means the
/// file already holds exactly this entry (so a second run writes nothing),
/// or an entry someone else wrote, which stays as it is and is never
/// joined by a second one (see `hand_written`). `files` is the whole
/// directory (to check a conversion's target name).
pub fn insert(
    files: &[ConfFile],
    primary: &ConfFile,
    entry: &Entry,
) -> Result<Vec<Step>, EditError> {
    insert_as(files, primary, entry, Owned::Marked)
}

/// `insert`, with `owned` saying which entries are the installer's.
pub fn insert_as(
    files: &[ConfFile],
    primary: &ConfFile,
    entry: &Entry,
    owned: Owned,
) -> Result<Vec<Step>, EditError> {
    let mut obj = parse_object(primary)?;
    let is_list = extension(&primary.name) == Some("conflist");
    let single = Value::Object(obj.clone());
    if !is_list {
        // A single-plugin config: wrap it into a list as libcni's
        // ConfListFromConf does (the plugin object kept whole).
        // Name and version as Go decodes them (any key case, last wins).
        let members: Members = gojson::parse_as(&primary.bytes).unwrap_or(Members(Vec::new()));
        let mut list = Map::new();
        if let Some(v) = members.string_field("cniversion") {
            list.insert("cniVersion".into(), Value::String(v.into()));
        }
        let name = members.string_field("name").unwrap_or_default();
        list.insert("name".into(), Value::String(name.into()));
        // The runtime read the file's one plugin and no others; as a
        // .conflist, libcni 1.3 would also read <conf dir>/<name>/*.conf
        // (and fail on a name such as "" or one holding a NUL). Older
        // libcni ignores the key.
        list.insert("loadOnlyInlinedPlugins".into(), Value::Bool(true));
        list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
        obj = list;
    } else if let Some(PluginDir::Plugins(found)) = &primary.plugin_dir {
        if !found.is_empty() {
            return Err(EditError::PluginDirAfter {
                file: primary.name.clone(),
                name: obj
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                types: found.iter().map(|p| p.plugin_type.clone()).collect(),
            });
        }
    }
    // The entry's fields do not depend on the version (it was validated
    // when it was made); the version itself must be one the plugin speaks.
    check_chain_versions(&primary.name, &obj)?;

    let desired = entry.as_value();
    let Some(Value::Array(plugins)) = obj.get_mut("plugins") else {
        return Err(EditError::Unreadable {
            file: primary.name.clone(),
            why: "no \"plugins\" list".into(),
        });
    };
    let mine = |p: &Value| is_installed(p) || (owned == Owned::AlsoUnmarked && is_csum(p));
    let ours: Vec<usize> = (0..plugins.len()).filter(|&i| mine(&plugins[i])).collect();
    if plugins.iter().any(|p| is_csum(p) && !mine(p)) {
        // An entry someone wrote by hand: it stays as it is, and no second
        // one joins it (two would apply the policy twice); ours goes.
        if ours.is_empty() || !is_list {
            return Ok(Vec::new());
        }
        for &i in ours.iter().rev() {
            plugins.remove(i);
        }
        return Ok(vec![Step::Write {
            name: primary.name.clone(),
            bytes: render(&Value::Object(obj)),
            mode_from: primary.name.clone(),
        }]);
    }
    let unchanged = ours.len() == 1 && render(&plugins[ours[0]]) == render(&desired);
    if is_list && unchanged {
        return Ok(Vec::new());
    }
    match ours.first() {
        // Updated in place, never moved: another chaining installer that
        // also appends at the end would otherwise fight us forever.
        Some(&first) => {
            plugins[first] = desired;
            for &extra in ours[1..].iter().rev() {
                plugins.remove(extra);
            }
        }
        None => plugins.push(desired),
    }
    let bytes = render(&Value::Object(obj));
    if is_list {
        return Ok(vec![Step::Write {
            name: primary.name.clone(),
            bytes,
            mode_from: primary.name.clone(),
        }]);
    }
    let stem = &primary.name[..primary.name.len() - extension(&primary.name).unwrap_or("").len()];
    let target = format!("{stem}conflist");
    if let Some(existing) = files.iter().find(|f| f.name == target) {
        // Ours: it holds our entry, or it is a conversion of this very
        // file that an interrupted run left behind. Either way nothing of
        // anyone else's is lost by replacing it.
        let ours = parse(&existing.bytes)
            .and_then(|v| v.get("plugins").and_then(Value::as_array).cloned())
            .is_some_and(|p| p.iter().any(is_installed) || others(&p) == [&single]);
        if !ours {
            return Err(EditError::TargetExists {
                file: primary.name.clone(),
                target,
            });
        }
    }
    // Write the list first, then move the original aside: at every moment
    // the directory holds one complete primary config.
    Ok(vec![
        Step::Write {
            name: target,
            bytes,
            mode_from: primary.name.clone(),
        },
        Step::Rename {
            from: primary.name.clone(),
            to: format!("{}{BACKUP_SUFFIX}", primary.name),
        },
    ])
}

/// Plans taking our entries out of one config file. For a list we made
/// from a `.conf`/`.json` (its backup is in `files`), the original comes
/// back byte for byte when nothing else changed in the list.
pub fn remove(files: &[ConfFile], file: &ConfFile) -> Vec<Step> {
    if file.unread.is_some() || file.raw_name.is_some() {
        // Not read, or not ours to name: never written.
        return Vec::new();
    }
    let Some(Value::Object(mut obj)) = parse(&file.bytes) else {
        return Vec::new();
    };
    let backup = (extension(&file.name) == Some("conflist"))
        .then(|| {
            let stem = &file.name[..file.name.len() - "conflist".len()];
            ["conf", "json"].into_iter().find_map(|ext| {
                let name = format!("{stem}{ext}{BACKUP_SUFFIX}");
                files.iter().find(|f| f.name == name)
            })
        })
        .flatten();
    let Some(Value::Array(plugins)) = obj.get_mut("plugins") else {
        return Vec::new();
    };
    let before = plugins.len();
    // Only what the installer wrote; a hand-written entry stays.
    plugins.retain(|p| !is_installed(p));
    if plugins.len() == before {
        return Vec::new();
    }
    if backup.is_none() && extension(&file.name) == Some("conflist") {
        // A conversion whose original is already back (a removal was
        // interrupted between its two steps): the list is a leftover.
        let stem = &file.name[..file.name.len() - "conflist".len()];
        let restored = ["conf", "json"].into_iter().any(|ext| {
            let name = format!("{stem}{ext}");
            files
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| parse(&f.bytes))
                .is_some_and(|orig| plugins.len() == 1 && plugins[0] == orig)
        });
        if restored {
            return vec![Step::Remove {
                name: file.name.clone(),
            }];
        }
    }
    if let Some(backup) = backup {
        let original_name = backup.name[..backup.name.len() - BACKUP_SUFFIX.len()].to_string();
        let restorable =
            parse(&backup.bytes).is_some_and(|orig| plugins.len() == 1 && plugins[0] == orig);
        // The primary CNI wrote its original again meanwhile: that file is
        // the runtime's now (it sorts before our list), and moving the old
        // copy over it would lose the new one. Our list is a leftover.
        let rewritten = files.iter().any(|f| f.name == original_name);
        if rewritten && restorable {
            return vec![
                Step::Remove {
                    name: file.name.clone(),
                },
                Step::Remove {
                    name: backup.name.clone(),
                },
            ];
        }
        if backup.unread.is_some() {
            // Not readable now: it cannot be compared, so it stays, and the
            // list only loses our entry.
            return vec![Step::Write {
                name: file.name.clone(),
                bytes: render(&Value::Object(obj)),
                mode_from: file.name.clone(),
            }];
        }
        if restorable {
            // The original back first, then our list away.
            return vec![
                Step::Rename {
                    from: backup.name.clone(),
                    to: original_name,
                },
                Step::Remove {
                    name: file.name.clone(),
                },
            ];
        }
        // Someone changed the list since (another plugin chained in):
        // keep their work as a conflist and drop the stale original.
        let bytes = render(&Value::Object(obj));
        return vec![
            Step::Write {
                name: file.name.clone(),
                bytes,
                mode_from: file.name.clone(),
            },
            Step::Remove {
                name: backup.name.clone(),
            },
        ];
    }
    if plugins.is_empty() {
        // Only our entry was left (someone else emptied the list): leave
        // no file that runtimes would fail to load.
        return vec![Step::Remove {
            name: file.name.clone(),
        }];
    }
    vec![Step::Write {
        name: file.name.clone(),
        bytes: render(&Value::Object(obj)),
        mode_from: file.name.clone(),
    }]
}

/// Plans removing our entry from every config file in the directory.
pub fn remove_all(files: &[ConfFile]) -> Vec<Step> {
    let mut names: Vec<&ConfFile> = files.iter().filter(|f| is_config_name(&f.name)).collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    names.into_iter().flat_map(|f| remove(files, f)).collect()
}

/// Whether `file` holds exactly `entry` once, as `insert` leaves it.
pub fn has_entry(files: &[ConfFile], file: &ConfFile, entry: &Entry) -> Result<bool, EditError> {
    if extension(&file.name) != Some("conflist") {
        return Ok(false);
    }
    Ok(insert(files, file, entry)?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::select::{select_primary, SkipReason};
    use serde_json::json;

    const KINDNET: &str = r#"{
	"cniVersion": "0.3.1",
	"name": "kindnet",
	"plugins": [
	{
		"type": "ptp",
		"ipMasq": false,
		"ipam": {
			"type": "host-local",
			"dataDir": "/run/cni-ipam-state",
			"routes": [ { "dst": "0.0.0.0/0" } ],
			"ranges": [ [ { "subnet": "10.244.0.0/24" } ] ]
		},
		"mtu": 1500
	},
	{
		"type": "portmap",
		"capabilities": { "portMappings": true }
	}
	]
}
"#;

    const BRIDGE_CONF: &str = r#"{"cniVersion":"1.0.0","name":"mynet","type":"bridge","bridge":"cni0","zeta":1,"alpha":{"b":2,"a":1}}"#;

    fn entry() -> Entry {
        Entry::from_config(r#"{"hostDriver": "txgbe", "logLevel": "debug"}"#).unwrap()
    }

    fn f(name: &str, text: &str) -> ConfFile {
        ConfFile::new(name, text.as_bytes())
    }

    /// Applies a plan to an in-memory directory.
    fn apply(files: &mut Vec<ConfFile>, plan: &[Step]) {
        for step in plan {
            match step {
                Step::Write { name, bytes, .. } => {
                    files.retain(|f| &f.name != name);
                    files.push(ConfFile::new(name, bytes.clone()));
                }
                Step::Rename { from, to } => {
                    let mut moved = files.iter().find(|f| &f.name == from).unwrap().clone();
                    files.retain(|f| &f.name != from && &f.name != to);
                    moved.name = to.clone();
                    files.push(moved);
                }
                Step::Remove { name } => files.retain(|f| &f.name != name),
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Runs the installer's logic once on a directory.
    fn install(files: &mut Vec<ConfFile>, entry: &Entry) -> Result<usize, EditError> {
        let snapshot = files.clone();
        let Some(primary) = select_primary(&snapshot).primary else {
            return Ok(0);
        };
        let plan = insert(&snapshot, primary, entry)?;
        apply(files, &plan);
        Ok(plan.len())
    }

    fn read(files: &[ConfFile], name: &str) -> Value {
        let file = files.iter().find(|f| f.name == name).expect(name);
        serde_json::from_slice(&file.bytes).unwrap()
    }

    fn names(files: &[ConfFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn entry_is_appended_with_the_lists_version_and_everything_kept() {
        let mut dir = vec![f("10-kindnet.conflist", KINDNET)];
        assert_eq!(install(&mut dir, &entry()).unwrap(), 1);
        let v = read(&dir, "10-kindnet.conflist");
        let mut want: Value = serde_json::from_str(KINDNET).unwrap();
        want["plugins"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "csum-offload", "managedBy": MANAGED_BY, "hostDriver": "txgbe", "logLevel": "debug"}));
        assert_eq!(v, want);
        // Key order kept at every level, ours last.
        let text = String::from_utf8(dir[0].bytes.clone()).unwrap();
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("\"cniVersion\"") < pos("\"name\"") && pos("\"name\"") < pos("\"plugins\""));
        assert!(pos("\"ipMasq\"") < pos("\"ipam\"") && pos("\"ipam\"") < pos("\"mtu\""));
        assert!(pos("\"dataDir\"") < pos("\"routes\"") && pos("\"routes\"") < pos("\"ranges\""));
        assert!(pos("\"portmap\"") < pos("\"csum-offload\""));
    }

    #[test]
    fn second_run_changes_nothing() {
        for (name, text) in [
            ("10-kindnet.conflist", KINDNET),
            ("10-bridge.conf", BRIDGE_CONF),
            ("10-bridge.json", BRIDGE_CONF),
        ] {
            let mut dir = vec![f(name, text)];
            install(&mut dir, &entry()).unwrap();
            let after_first = dir.clone();
            assert_eq!(install(&mut dir, &entry()).unwrap(), 0, "{name}");
            assert_eq!(dir, after_first, "{name}: byte-identical");
        }
    }

    #[test]
    fn conf_is_converted_to_conflist_and_restored_on_removal() {
        for ext in ["conf", "json"] {
            let name = format!("10-bridge.{ext}");
            let mut dir = vec![
                f(&name, BRIDGE_CONF),
                f(
                    "99-loopback.conf",
                    r#"{"cniVersion":"1.0.0","type":"loopback"}"#,
                ),
            ];
            let original = dir.clone();
            install(&mut dir, &entry()).unwrap();
            let backup = format!("10-bridge.{ext}{BACKUP_SUFFIX}");
            let mut want = vec![backup.as_str(), "10-bridge.conflist", "99-loopback.conf"];
            want.sort();
            assert_eq!(names(&dir), want);
            assert_eq!(
                select_primary(&dir).primary.unwrap().name,
                "10-bridge.conflist"
            );
            let list = read(&dir, "10-bridge.conflist");
            let orig: Value = serde_json::from_str(BRIDGE_CONF).unwrap();
            assert_eq!(
                list,
                // loadOnlyInlinedPlugins: the runtime reads the one plugin
                // it read from the .conf, never <conf dir>/mynet/*.conf.
                json!({"cniVersion": "1.0.0", "name": "mynet", "loadOnlyInlinedPlugins": true, "plugins": [
                    orig,
                    {"type": "csum-offload", "managedBy": MANAGED_BY, "hostDriver": "txgbe", "logLevel": "debug"}
                ]})
            );
            // The wrapped plugin keeps its key order.
            let list_file = dir.iter().find(|f| f.name == "10-bridge.conflist").unwrap();
            let text = String::from_utf8(list_file.bytes.clone()).unwrap();
            assert!(text.find("\"zeta\"").unwrap() < text.find("\"alpha\"").unwrap());
            let snapshot = dir.clone();
            apply(&mut dir, &remove_all(&snapshot));
            assert_eq!(dir, original, "{ext}: restored byte for byte");
        }
    }

    #[test]
    fn conversion_again_after_the_primary_cni_rewrites_its_conf() {
        let mut dir = vec![f("10-bridge.conf", BRIDGE_CONF)];
        install(&mut dir, &entry()).unwrap();
        // The primary CNI writes its .conf again; it sorts first again.
        let rewritten = BRIDGE_CONF.replace("cni0", "cni1");
        dir.push(f("10-bridge.conf", &rewritten));
        assert_eq!(select_primary(&dir).primary.unwrap().name, "10-bridge.conf");
        install(&mut dir, &entry()).unwrap();
        assert_eq!(
            select_primary(&dir).primary.unwrap().name,
            "10-bridge.conflist"
        );
        assert_eq!(
            read(&dir, "10-bridge.conflist")["plugins"][0]["bridge"],
            "cni1"
        );
        let snapshot = dir.clone();
        apply(&mut dir, &remove_all(&snapshot));
        assert_eq!(dir, vec![f("10-bridge.conf", &rewritten)]);
    }

    #[test]
    fn interrupted_runs_converge() {
        let entry = entry();
        // Install killed between writing the list and moving the .conf
        // aside: the next run finishes the conversion.
        let mut dir = vec![f("10-bridge.conf", BRIDGE_CONF)];
        let plan = insert(&dir, &dir[0], &entry).unwrap();
        apply(&mut dir, &plan[..1]);
        assert_eq!(names(&dir), ["10-bridge.conf", "10-bridge.conflist"]);
        install(&mut dir, &entry).unwrap();
        assert_eq!(
            select_primary(&dir).primary.unwrap().name,
            "10-bridge.conflist"
        );
        // Removal killed between restoring the .conf and removing the list:
        // the next removal takes the leftover list away.
        let snapshot = dir.clone();
        let plan = remove_all(&snapshot);
        apply(&mut dir, &plan[..1]);
        assert_eq!(names(&dir), ["10-bridge.conf", "10-bridge.conflist"]);
        let snapshot = dir.clone();
        apply(&mut dir, &remove_all(&snapshot));
        assert_eq!(dir, vec![f("10-bridge.conf", BRIDGE_CONF)]);
        // A leftover list without our entry does not block a conversion.
        let leftover = render(&json!({"cniVersion": "1.0.0", "name": "mynet",
            "plugins": [serde_json::from_str::<Value>(BRIDGE_CONF).unwrap()]}));
        let mut dir = vec![
            f("10-bridge.conf", BRIDGE_CONF),
            ConfFile::new("10-bridge.conflist", leftover),
        ];
        install(&mut dir, &entry).unwrap();
        assert_eq!(
            select_primary(&dir).primary.unwrap().name,
            "10-bridge.conflist"
        );
    }

    #[test]
    fn a_list_whose_plugin_dir_runs_after_it_is_not_edited() {
        use crate::install::select::plugins::DirPlugin;
        // Found by the conf dir fuzz run (e2e/libcni/confdir_fuzz.py):
        // libcni 1.3 appends <conf dir>/<name>/*.conf after the list's own
        // plugins, so an entry added to the list would not run last.
        let list = r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"ptp"}]}"#;
        let mut file = f("10-a.conflist", list);
        file.plugin_dir = Some(PluginDir::Plugins(vec![DirPlugin {
            path: "/etc/cni/net.d/net/90-x.conf".into(),
            plugin_type: "tuning".into(),
        }]));
        let err = insert(std::slice::from_ref(&file), &file, &entry()).unwrap_err();
        assert!(
            matches!(&err, EditError::PluginDirAfter { name, .. } if name == "net"),
            "{err}"
        );
        assert!(err.to_string().contains("(tuning)"), "{err}");
        // An empty or absent plugin dir changes nothing.
        for dir in [PluginDir::Plugins(Vec::new()), PluginDir::Absent] {
            file.plugin_dir = Some(dir);
            assert_eq!(
                insert(std::slice::from_ref(&file), &file, &entry())
                    .unwrap()
                    .len(),
                1
            );
        }
    }

    #[test]
    fn conversion_refuses_to_overwrite_a_foreign_conflist() {
        let foreign = r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"ptp"}]}"#;
        let dir = vec![f("10-a.conf", BRIDGE_CONF), f("10-a.conflist", foreign)];
        let err = insert(&dir, &dir[0], &entry()).unwrap_err();
        assert!(matches!(err, EditError::TargetExists { .. }), "{err}");
    }

    #[test]
    fn existing_entry_is_updated_in_place_never_duplicated() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge"},
            {"type": "csum-offload", "managedBy": MANAGED_BY, "hostDriver": "i40e"},
            {"type": "tuning", "sysctl": {}},
            {"type": "csum-offload", "managedBy": MANAGED_BY}
        ]});
        let mut dir = vec![ConfFile::new("10-n.conflist", render(&list))];
        assert_eq!(install(&mut dir, &entry()).unwrap(), 1);
        let v = read(&dir, "10-n.conflist");
        assert_eq!(
            v["plugins"],
            json!([
                {"type": "bridge"},
                {"type": "csum-offload", "managedBy": MANAGED_BY, "hostDriver": "txgbe", "logLevel": "debug"},
                {"type": "tuning", "sysctl": {}}
            ])
        );
        assert_eq!(install(&mut dir, &entry()).unwrap(), 0);
        // A different config replaces it, same place.
        let other = Entry::from_config(r#"{"type":"csum-offload","apply":"container"}"#).unwrap();
        install(&mut dir, &other).unwrap();
        assert_eq!(
            read(&dir, "10-n.conflist")["plugins"][1],
            json!({"type": "csum-offload", "managedBy": MANAGED_BY, "apply": "container"})
        );
    }

    #[test]
    fn a_hand_written_entry_stays_and_is_never_joined_by_a_second() {
        // Written by an operator (Cilium customConf): no mark.
        let hand = json!({"type": "csum-offload", "drivers": {"ngbe": {"tx": false}}});
        let list = |plugins: Value| {
            ConfFile::new(
                "10-cilium.conflist",
                render(&json!({"cniVersion": "1.0.0", "name": "cilium", "plugins": plugins})),
            )
        };
        let dir = vec![list(json!([{"type": "cilium-cni"}, hand.clone()]))];
        assert!(
            insert(&dir, &dir[0], &entry()).unwrap().is_empty(),
            "not overwritten, not joined"
        );
        assert!(has_entry(&dir, &dir[0], &entry()).unwrap());
        assert_eq!(hand_written(&dir[0]), vec![hand.clone()]);
        assert!(remove_all(&dir).is_empty(), "uninstall leaves it");
        // One of ours next to it (installed before the operator added
        // theirs): ours goes, theirs stays.
        let mut dir = vec![list(
            json!([{"type": "cilium-cni"}, entry().as_value(), hand.clone()]),
        )];
        assert_eq!(install(&mut dir, &entry()).unwrap(), 1);
        assert_eq!(
            read(&dir, "10-cilium.conflist")["plugins"],
            json!([{"type": "cilium-cni"}, hand])
        );
        // An installer from before the mark wrote unmarked entries: at an
        // upgrade they are adopted (updated in place, marked).
        let legacy = json!({"type": "csum-offload", "hostDriver": "i40e"});
        let dir = vec![list(json!([{"type": "cilium-cni"}, legacy]))];
        let plan = insert_as(&dir, &dir[0], &entry(), Owned::AlsoUnmarked).unwrap();
        let mut after = dir.clone();
        apply(&mut after, &plan);
        assert_eq!(
            read(&after, "10-cilium.conflist")["plugins"],
            json!([{"type": "cilium-cni"}, entry().as_value()])
        );
    }

    #[test]
    fn unknown_fields_numbers_and_order_survive() {
        let text = r#"{"zz":{"nested":[1,2.5,-3,"x",null,true]},"cniVersion":"1.1.0","cniVersions":["1.0.0","1.1.0"],"name":"n","disableCheck":true,"plugins":[{"type":"x","b":1,"a":2}],"aa":"last"}"#;
        let mut dir = vec![f("10-n.conflist", text)];
        install(&mut dir, &entry()).unwrap();
        let out = String::from_utf8(dir[0].bytes.clone()).unwrap();
        let keys = [
            "\"zz\"",
            "\"cniVersion\"",
            "\"cniVersions\"",
            "\"name\"",
            "\"disableCheck\"",
            "\"plugins\"",
            "\"b\"",
            "\"a\"",
            "\"csum-offload\"",
            "\"aa\"",
        ];
        let positions: Vec<usize> = keys.iter().map(|k| out.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
        let mut want: Value = serde_json::from_str(text).unwrap();
        want["plugins"]
            .as_array_mut()
            .unwrap()
            .push(entry().as_value());
        assert_eq!(read(&dir, "10-n.conflist"), want);
    }

    #[test]
    fn several_files_only_the_first_is_edited() {
        let second = r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#;
        let mut dir = vec![
            f("10-kindnet.conflist", KINDNET),
            f("20-b.conflist", second),
        ];
        install(&mut dir, &entry()).unwrap();
        assert_eq!(dir[1].bytes, second.as_bytes());
        assert!(has_entry(&dir, &dir[0], &entry()).unwrap());
    }

    #[test]
    fn invalid_primary_is_left_alone() {
        // Only an invalid file: nothing to do, and nothing written.
        let mut dir = vec![f(
            "10-kindnet.conflist",
            "{\"cniVersion\": \"0.3.1\", \"plugins\": [",
        )];
        let before = dir.clone();
        assert_eq!(install(&mut dir, &entry()).unwrap(), 0);
        assert_eq!(dir, before);
        let sel = select_primary(&before);
        assert!(matches!(sel.skipped[0].1, SkipReason::Invalid(_)));
        assert!(sel.skipped[0].1.to_string().contains("invalid JSON"));
        // Later it becomes valid: the entry goes in.
        dir[0] = f("10-kindnet.conflist", KINDNET);
        assert_eq!(install(&mut dir, &entry()).unwrap(), 1);
    }

    #[test]
    fn unsupported_versions_are_refused() {
        let cases = [
            r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}"#,
            r#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
            // libcni 1.2+ would run it at 1.1.0, older libcni at 0.2.0.
            r#"{"cniVersion":"0.2.0","cniVersions":["1.1.0"],"name":"n","plugins":[{"type":"bridge"}]}"#,
            // libcni 1.2+ skips 9.0.0 and runs it at 0.2.0.
            r#"{"cniVersion":"0.1.0","cniVersions":["0.2.0","9.0.0"],"name":"n","plugins":[{"type":"bridge"}]}"#,
            // No cniVersion: older libcni runs the chain at 0.1.0.
            r#"{"cniVersions":["1.0.0"],"name":"n","plugins":[{"type":"bridge"}]}"#,
        ];
        for text in cases {
            let dir = vec![f("10-n.conflist", text)];
            let err = insert(&dir, &dir[0], &entry()).unwrap_err();
            assert!(
                matches!(err, EditError::UnsupportedVersion { .. }),
                "{text}: {err}"
            );
        }
        for v in spec_versions::SUPPORTED {
            let text =
                format!(r#"{{"cniVersion":"{v}","name":"n","plugins":[{{"type":"bridge"}}]}}"#);
            let dir = vec![f("10-n.conflist", &text)];
            assert_eq!(insert(&dir, &dir[0], &entry()).unwrap().len(), 1, "{v}");
        }
        // libcni's cniVersions rule: versions it does not know are
        // skipped, the highest of the rest is used, so these load and run
        // at a version the plugin speaks on every runtime.
        for text in [
            r#"{"cniVersion":"1.1.0","cniVersions":["1.1.0","9.0.0"],"name":"n","plugins":[{"type":"bridge"}]}"#,
            r#"{"cniVersion":"1.0.0","cniVersions":["0.4.0","1.1.0","2.0.0"],"name":"n","plugins":[{"type":"bridge"}]}"#,
        ] {
            let dir = vec![f("10-n.conflist", text)];
            assert_eq!(
                select_primary(&dir).primary.map(|p| p.name.as_str()),
                Some("10-n.conflist")
            );
            assert_eq!(insert(&dir, &dir[0], &entry()).unwrap().len(), 1, "{text}");
        }
    }

    #[test]
    fn removal_cases() {
        let with_entry = |plugins: Value| {
            ConfFile::new(
                "10-n.conflist",
                render(&json!({"cniVersion": "1.0.0", "name": "n", "plugins": plugins})),
            )
        };
        // Nothing of ours: no steps.
        let dir = vec![f("10-kindnet.conflist", KINDNET)];
        assert!(remove_all(&dir).is_empty());
        // Ours among others: written without it, the rest kept.
        let mut dir = vec![f("10-kindnet.conflist", KINDNET)];
        install(&mut dir, &entry()).unwrap();
        let snapshot = dir.clone();
        apply(&mut dir, &remove_all(&snapshot));
        assert_eq!(
            read(&dir, "10-kindnet.conflist"),
            serde_json::from_str::<Value>(KINDNET).unwrap()
        );
        // Entries in every file go, not only the primary's.
        let ours = entry().as_value();
        let mut dir = vec![
            with_entry(json!([{"type": "bridge"}, ours])),
            ConfFile::new(
                "20-m.conflist",
                render(
                    &json!({"cniVersion": "1.0.0", "name": "m", "plugins": [ours, {"type": "ptp"}]}),
                ),
            ),
        ];
        let snapshot = dir.clone();
        apply(&mut dir, &remove_all(&snapshot));
        assert_eq!(
            read(&dir, "10-n.conflist")["plugins"],
            json!([{"type": "bridge"}])
        );
        assert_eq!(
            read(&dir, "20-m.conflist")["plugins"],
            json!([{"type": "ptp"}])
        );
        // A list of only our entry is removed rather than left empty.
        let dir = vec![with_entry(json!([ours]))];
        assert_eq!(
            remove_all(&dir),
            vec![Step::Remove {
                name: "10-n.conflist".into()
            }]
        );
        // Converted, then another plugin chained in: kept as a conflist.
        let mut dir = vec![f("10-bridge.conf", BRIDGE_CONF)];
        install(&mut dir, &entry()).unwrap();
        let mut list = read(&dir, "10-bridge.conflist");
        list["plugins"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "istio-cni"}));
        dir.retain(|f| f.name != "10-bridge.conflist");
        dir.push(ConfFile::new("10-bridge.conflist", render(&list)));
        let snapshot = dir.clone();
        apply(&mut dir, &remove_all(&snapshot));
        assert_eq!(names(&dir), ["10-bridge.conflist"]);
        assert_eq!(
            read(&dir, "10-bridge.conflist")["plugins"][1],
            json!({"type": "istio-cni"})
        );
    }
}
