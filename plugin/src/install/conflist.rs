//! Editing the node's CNI network configuration: pure functions from file
//! contents to a plan of file operations, so every case is unit-tested
//! without touching a directory.
//!
//! The rules follow libcni (what kubelet, CRI-O and containerd load):
//! config files end in `.conf`, `.conflist` or `.json`; the runtime uses
//! the first one in byte order that parses; `.conflist` files hold a
//! `plugins` list, the others a single plugin with a `type`.

use super::netconf::{self, Members, Problem};
use crate::cni::version::{self, Version};
use crate::config::PluginConfig;
use serde_json::{Map, Value};

/// The plugin type (and binary name) of our entry.
pub const PLUGIN_TYPE: &str = "csum-offload";
/// Suffix of the file that keeps a converted `.conf`/`.json` until removal.
/// It must not end in a config extension, or runtimes would load it.
pub const BACKUP_SUFFIX: &str = ".csum-offload-backup";

/// Whether libcni would load a file of this name.
pub fn is_config_name(name: &str) -> bool {
    matches!(extension(name), Some("conf" | "conflist" | "json"))
}

fn extension(name: &str) -> Option<&str> {
    name.rsplit_once('.').map(|(_, ext)| ext)
}

/// One config file as read from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl ConfFile {
    pub fn new(name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.to_string(),
            bytes: bytes.into(),
        }
    }
}

/// Why the runtime would not use a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Empty,
    Invalid(String),
    NoType,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Empty => f.write_str("the file is empty"),
            SkipReason::Invalid(why) => write!(f, "not a valid network config: {why}"),
            SkipReason::NoType => f.write_str("no plugin \"type\" (a conflist in a .conf file?)"),
        }
    }
}

/// The file the runtime would use, and the ones before it that it skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<'a> {
    pub primary: Option<&'a ConfFile>,
    pub skipped: Vec<(&'a ConfFile, SkipReason)>,
}

/// Picks the primary network config the way libcni's `ConfFiles` plus
/// kubelet/CRI-O do: sorted by name, first that loads wins.
pub fn select_primary(files: &[ConfFile]) -> Selection<'_> {
    let mut sorted: Vec<&ConfFile> = files.iter().filter(|f| is_config_name(&f.name)).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut skipped = Vec::new();
    for file in sorted {
        match check_loadable(file) {
            Ok(()) => {
                return Selection {
                    primary: Some(file),
                    skipped,
                }
            }
            Err(why) => skipped.push((file, why)),
        }
    }
    Selection {
        primary: None,
        skipped,
    }
}

/// Selects a file named by the operator (`--conf-file`) instead of the
/// first one: for setups where the runtime's first file is a meta plugin
/// that delegates to it (Multus).
pub fn select_named<'a>(files: &'a [ConfFile], name: &str) -> Selection<'a> {
    match files.iter().find(|f| f.name == name) {
        None => Selection {
            primary: None,
            skipped: Vec::new(),
        },
        Some(file) => match check_loadable(file) {
            Ok(()) => Selection {
                primary: Some(file),
                skipped: Vec::new(),
            },
            Err(why) => Selection {
                primary: None,
                skipped: vec![(file, why)],
            },
        },
    }
}

/// Meta plugins that run other network configs for the pod: our entry
/// belongs in the config they delegate to, not in theirs.
const DELEGATING_TYPES: &[&str] = &["multus", "multus-shim"];

/// The delegating plugin type in a config, if any.
pub fn delegating_plugin(file: &ConfFile) -> Option<String> {
    let value: Value = serde_json::from_slice(&file.bytes).ok()?;
    let types: Vec<&Value> = match value.get("plugins").and_then(Value::as_array) {
        Some(plugins) => plugins.iter().filter_map(|p| p.get("type")).collect(),
        None => value.get("type").into_iter().collect(),
    };
    types
        .into_iter()
        .filter_map(Value::as_str)
        .find(|t| DELEGATING_TYPES.contains(t))
        .map(String::from)
}

/// libcni's checks: a conflist needs a string `name`, well-typed list
/// options and a non-empty `plugins` list of plugin configs; a single
/// config is one plugin config. Each plugin config must decode into
/// libcni's NetConf and have a `type` (see netconf.rs).
pub fn check_loadable(file: &ConfFile) -> Result<(), SkipReason> {
    if file.bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SkipReason::Empty);
    }
    let value: Value = serde_json::from_slice(&file.bytes)
        .map_err(|e| SkipReason::Invalid(format!("invalid JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(SkipReason::Invalid("not a JSON object".into()));
    };
    if extension(&file.name) != Some("conflist") {
        // Decoded straight from the file: duplicate keys count.
        let members: Members = serde_json::from_slice(&file.bytes)
            .map_err(|e| SkipReason::Invalid(format!("invalid JSON: {e}")))?;
        return netconf::check(&members).map_err(SkipReason::from);
    }
    if obj.get("cniVersion").is_some_and(|v| !v.is_string()) {
        return Err(SkipReason::Invalid("cniVersion is not a string".into()));
    }
    if !obj.get("name").is_some_and(Value::is_string) {
        return Err(SkipReason::Invalid("no \"name\" string".into()));
    }
    if let Some(v) = obj.get("cniVersions") {
        let strings = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !strings {
            return Err(SkipReason::Invalid(
                "cniVersions is not a list of strings".into(),
            ));
        }
    }
    for key in ["disableCheck", "disableGC"] {
        let ok = match obj.get(key) {
            None | Some(Value::Bool(_)) => true,
            Some(Value::String(s)) => {
                s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false")
            }
            Some(_) => false,
        };
        if !ok {
            return Err(SkipReason::Invalid(format!("{key} is not true or false")));
        }
    }
    let plugins = match obj.get("plugins") {
        Some(Value::Array(p)) if !p.is_empty() => p,
        Some(Value::Array(_)) => return Err(SkipReason::Invalid("\"plugins\" is empty".into())),
        _ => return Err(SkipReason::Invalid("no \"plugins\" list".into())),
    };
    for (i, p) in plugins.iter().enumerate() {
        let members = match (p, Members::of(p)) {
            (_, Some(m)) => m,
            (Value::Null, None) => return Err(SkipReason::NoType),
            (_, None) => {
                return Err(SkipReason::Invalid(format!(
                    "plugins[{i}] is not an object"
                )))
            }
        };
        netconf::check(&members).map_err(|e| match SkipReason::from(e) {
            SkipReason::Invalid(why) => SkipReason::Invalid(format!("plugins[{i}]: {why}")),
            other => other,
        })?;
    }
    Ok(())
}

impl From<Problem> for SkipReason {
    fn from(p: Problem) -> Self {
        match p {
            Problem::Invalid(why) => SkipReason::Invalid(why),
            Problem::NoType => SkipReason::NoType,
        }
    }
}

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
    #[error("{file}: cniVersion {version} is not supported by csum-offload (supported: {}); the runtime would fail every pod with this chain, so the entry is not added", version::SUPPORTED.join(", "))]
    UnsupportedVersion { file: String, version: String },
    #[error("{file}: the csum-offload entry would be invalid here: {why}")]
    InvalidEntry { file: String, why: String },
    #[error("{file}: cannot convert it to {target}: that file exists and is not ours; move one of them away")]
    TargetExists { file: String, target: String },
    #[error("{file}: {why}")]
    Unreadable { file: String, why: String },
}

/// The entry to insert, built from the `--config` file (a ConfigMap).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry(Map<String, Value>);

impl Entry {
    /// Parses and validates the config. `type` comes first and must be
    /// ours if given; `cniVersion` and `name` are dropped because the
    /// runtime injects the list's own; `prevResult` belongs to the runtime.
    pub fn from_config(text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(obj) = value else {
            return Err("must be a JSON object (one conflist entry)".into());
        };
        let mut entry = Map::new();
        match obj.get("type") {
            None => {}
            Some(Value::String(t)) if t == PLUGIN_TYPE => {}
            Some(other) => {
                return Err(format!(
                    "\"type\" must be {PLUGIN_TYPE:?} (the binary the runtime runs), got {other}"
                ))
            }
        }
        if obj.contains_key("prevResult") {
            return Err("\"prevResult\" is set by the runtime, not by config".into());
        }
        entry.insert("type".into(), Value::String(PLUGIN_TYPE.into()));
        for (k, v) in obj {
            if !matches!(k.as_str(), "type" | "cniVersion" | "name") {
                entry.insert(k, v);
            }
        }
        // The runtime must be able to decode the conflist we write it into.
        if let Err(Problem::Invalid(why)) = netconf::check(&Members(
            entry.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        )) {
            return Err(format!(
                "{why} (libcni could not load a conflist with this entry)"
            ));
        }
        let entry = Entry(entry);
        entry.validate("1.0.0", "")?;
        Ok(entry)
    }

    /// The default entry: the built-in driver policy.
    pub fn default_entry() -> Self {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(PLUGIN_TYPE.into()));
        Entry(m)
    }

    pub fn as_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// The entry as the plugin will parse it (at cniVersion 1.0.0).
    pub fn plugin_config(&self) -> Result<PluginConfig, String> {
        let mut conf = self.0.clone();
        conf.insert("cniVersion".into(), Value::String("1.0.0".into()));
        PluginConfig::parse(Value::Object(conf).to_string().as_bytes()).map_err(|e| e.to_string())
    }

    /// Parses the entry exactly as the runtime will hand it to the plugin
    /// (libcni injects the list's `name` and `cniVersion`).
    fn validate(&self, cni_version: &str, name: &str) -> Result<(), String> {
        let mut conf = self.0.clone();
        conf.insert("cniVersion".into(), Value::String(cni_version.into()));
        conf.insert("name".into(), Value::String(name.into()));
        PluginConfig::parse(Value::Object(conf).to_string().as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn is_ours(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

/// The plugins of a list that are not ours.
fn others(plugins: &[Value]) -> Vec<&Value> {
    plugins.iter().filter(|p| !is_ours(p)).collect()
}

/// Pretty JSON with a final newline: the one format we write.
pub fn render(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

fn parse_object(file: &ConfFile) -> Result<Map<String, Value>, EditError> {
    match serde_json::from_slice(&file.bytes) {
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

/// The versions the runtime may run the chain at: `cniVersion`, and the
/// highest of `cniVersions` (CNI 1.1 lists; libcni picks the highest).
fn chain_versions(file: &str, list: &Map<String, Value>) -> Result<Vec<String>, EditError> {
    let unsupported = |v: &str| EditError::UnsupportedVersion {
        file: file.to_string(),
        version: format!("{v:?}"),
    };
    let mut versions = Vec::new();
    match list.get("cniVersion").and_then(Value::as_str) {
        Some(v) => versions.push(v.to_string()),
        None => return Err(unsupported("(none)")),
    }
    if let Some(Value::Array(all)) = list.get("cniVersions") {
        let highest = all
            .iter()
            .filter_map(Value::as_str)
            .max_by_key(|v| Version::parse(v));
        if let Some(v) = highest {
            versions.push(v.to_string());
        }
    }
    for v in &versions {
        if version::check_supported(v).is_err() {
            return Err(unsupported(v));
        }
    }
    Ok(versions)
}

/// Plans putting `entry` into the primary file. An empty plan means the
/// file already holds exactly this entry (so a second run writes nothing).
/// `files` is the whole directory (to check a conversion's target name).
pub fn plan_insert(
    files: &[ConfFile],
    primary: &ConfFile,
    entry: &Entry,
) -> Result<Vec<Step>, EditError> {
    let mut obj = parse_object(primary)?;
    let is_list = extension(&primary.name) == Some("conflist");
    let single = Value::Object(obj.clone());
    if !is_list {
        // A single-plugin config: wrap it into a list as libcni's
        // ConfListFromConf does (the plugin object kept whole).
        // Name and version as Go decodes them (any key case, last wins).
        let members: Members =
            serde_json::from_slice(&primary.bytes).unwrap_or(Members(Vec::new()));
        let mut list = Map::new();
        if let Some(v) = members.string_field("cniversion") {
            list.insert("cniVersion".into(), Value::String(v.into()));
        }
        let name = members.string_field("name").unwrap_or_default();
        list.insert("name".into(), Value::String(name.into()));
        list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
        obj = list;
    }
    let versions = chain_versions(&primary.name, &obj)?;
    let list_name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
    for v in &versions {
        entry
            .validate(v, list_name)
            .map_err(|why| EditError::InvalidEntry {
                file: primary.name.clone(),
                why,
            })?;
    }

    let desired = entry.as_value();
    let Some(Value::Array(plugins)) = obj.get_mut("plugins") else {
        return Err(EditError::Unreadable {
            file: primary.name.clone(),
            why: "no \"plugins\" list".into(),
        });
    };
    let ours: Vec<usize> = (0..plugins.len())
        .filter(|&i| is_ours(&plugins[i]))
        .collect();
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
        let ours = serde_json::from_slice::<Value>(&existing.bytes)
            .ok()
            .and_then(|v| v.get("plugins").and_then(Value::as_array).cloned())
            .is_some_and(|p| p.iter().any(is_ours) || others(&p) == [&single]);
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
pub fn plan_remove(files: &[ConfFile], file: &ConfFile) -> Vec<Step> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&file.bytes) else {
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
    plugins.retain(|p| !is_ours(p));
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
                .and_then(|f| serde_json::from_slice::<Value>(&f.bytes).ok())
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
        let restorable = serde_json::from_slice::<Value>(&backup.bytes)
            .ok()
            .is_some_and(|orig| plugins.len() == 1 && plugins[0] == orig);
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
pub fn plan_remove_all(files: &[ConfFile]) -> Vec<Step> {
    let mut names: Vec<&ConfFile> = files.iter().filter(|f| is_config_name(&f.name)).collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    names
        .into_iter()
        .flat_map(|f| plan_remove(files, f))
        .collect()
}

/// Whether `file` holds exactly `entry` once, as `plan_insert` leaves it.
pub fn has_entry(files: &[ConfFile], file: &ConfFile, entry: &Entry) -> Result<bool, EditError> {
    if extension(&file.name) != Some("conflist") {
        return Ok(false);
    }
    Ok(plan_insert(files, file, entry)?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let plan = plan_insert(&snapshot, primary, entry)?;
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
    fn primary_selection_follows_libcni() {
        let valid_list = r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#;
        // (what, directory, primary, skipped)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            ("no file yet", &[], None, &[]),
            (
                "first name wins",
                &[("20-b.conflist", valid_list), ("10-a.conflist", valid_list)],
                Some("10-a.conflist"),
                &[],
            ),
            (
                "byte order, .conf before .conflist",
                &[("10-a.conflist", valid_list), ("10-a.conf", BRIDGE_CONF)],
                Some("10-a.conf"),
                &[],
            ),
            (
                "other extensions ignored",
                &[
                    ("00-x.conf.bak", "{"),
                    ("01-y.tmp", ""),
                    (".csum-offload.tmp-1", ""),
                    ("10-a.json", BRIDGE_CONF),
                ],
                Some("10-a.json"),
                &[],
            ),
            (
                "invalid JSON, empty and typeless files are skipped",
                &[
                    ("00-bad.conflist", "{\"name\": "),
                    ("01-empty.conf", "  \n"),
                    ("02-list-in-conf.conf", valid_list),
                    (
                        "03-typeless.conflist",
                        r#"{"name":"n","plugins":[{"x":1}]}"#,
                    ),
                    ("04-noplugins.conflist", r#"{"name":"n","plugins":[]}"#),
                    ("05-array.json", "[1]"),
                    ("06-name-object.conf", r#"{"type":"bridge","name":{"a":1}}"#),
                    (
                        "07-bad-plugin.conflist",
                        r#"{"name":"n","plugins":[{"type":"a","ipam":"x"}]}"#,
                    ),
                    (
                        "08-disablecheck.conflist",
                        r#"{"name":"n","disableCheck":"maybe","plugins":[{"type":"a"}]}"#,
                    ),
                    ("10-good.conflist", valid_list),
                ],
                Some("10-good.conflist"),
                &[
                    "00-bad.conflist",
                    "01-empty.conf",
                    "02-list-in-conf.conf",
                    "03-typeless.conflist",
                    "04-noplugins.conflist",
                    "05-array.json",
                    "06-name-object.conf",
                    "07-bad-plugin.conflist",
                    "08-disablecheck.conflist",
                ],
            ),
            (
                "nothing loadable",
                &[("10-bad.conflist", "{")],
                None,
                &["10-bad.conflist"],
            ),
        ];
        for (what, dir, want, want_skipped) in cases {
            let files: Vec<ConfFile> = dir.iter().map(|(n, t)| f(n, t)).collect();
            let sel = select_primary(&files);
            assert_eq!(sel.primary.map(|p| p.name.as_str()), *want, "{what}");
            let skipped: Vec<&str> = sel.skipped.iter().map(|(f, _)| f.name.as_str()).collect();
            assert_eq!(skipped, *want_skipped, "{what}");
        }
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
            .push(json!({"type": "csum-offload", "hostDriver": "txgbe", "logLevel": "debug"}));
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
                json!({"cniVersion": "1.0.0", "name": "mynet", "plugins": [
                    orig,
                    {"type": "csum-offload", "hostDriver": "txgbe", "logLevel": "debug"}
                ]})
            );
            // The wrapped plugin keeps its key order.
            let list_file = dir.iter().find(|f| f.name == "10-bridge.conflist").unwrap();
            let text = String::from_utf8(list_file.bytes.clone()).unwrap();
            assert!(text.find("\"zeta\"").unwrap() < text.find("\"alpha\"").unwrap());
            let snapshot = dir.clone();
            apply(&mut dir, &plan_remove_all(&snapshot));
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
        apply(&mut dir, &plan_remove_all(&snapshot));
        assert_eq!(dir, vec![f("10-bridge.conf", &rewritten)]);
    }

    #[test]
    fn interrupted_runs_converge() {
        let entry = entry();
        // Install killed between writing the list and moving the .conf
        // aside: the next run finishes the conversion.
        let mut dir = vec![f("10-bridge.conf", BRIDGE_CONF)];
        let plan = plan_insert(&dir, &dir[0], &entry).unwrap();
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
        let plan = plan_remove_all(&snapshot);
        apply(&mut dir, &plan[..1]);
        assert_eq!(names(&dir), ["10-bridge.conf", "10-bridge.conflist"]);
        let snapshot = dir.clone();
        apply(&mut dir, &plan_remove_all(&snapshot));
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
    fn conversion_refuses_to_overwrite_a_foreign_conflist() {
        let foreign = r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"ptp"}]}"#;
        let dir = vec![f("10-a.conf", BRIDGE_CONF), f("10-a.conflist", foreign)];
        let err = plan_insert(&dir, &dir[0], &entry()).unwrap_err();
        assert!(matches!(err, EditError::TargetExists { .. }), "{err}");
    }

    #[test]
    fn existing_entry_is_updated_in_place_never_duplicated() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge"},
            {"type": "csum-offload", "hostDriver": "i40e"},
            {"type": "tuning", "sysctl": {}},
            {"type": "csum-offload"}
        ]});
        let mut dir = vec![ConfFile::new("10-n.conflist", render(&list))];
        assert_eq!(install(&mut dir, &entry()).unwrap(), 1);
        let v = read(&dir, "10-n.conflist");
        assert_eq!(
            v["plugins"],
            json!([
                {"type": "bridge"},
                {"type": "csum-offload", "hostDriver": "txgbe", "logLevel": "debug"},
                {"type": "tuning", "sysctl": {}}
            ])
        );
        assert_eq!(install(&mut dir, &entry()).unwrap(), 0);
        // A different config replaces it, same place.
        let other = Entry::from_config(r#"{"type":"csum-offload","apply":"container"}"#).unwrap();
        install(&mut dir, &other).unwrap();
        assert_eq!(
            read(&dir, "10-n.conflist")["plugins"][1],
            json!({"type": "csum-offload", "apply": "container"})
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
            r#"{"cniVersion":"1.1.0","cniVersions":["1.1.0","9.0.0"],"name":"n","plugins":[{"type":"bridge"}]}"#,
        ];
        for text in cases {
            let dir = vec![f("10-n.conflist", text)];
            let err = plan_insert(&dir, &dir[0], &entry()).unwrap_err();
            assert!(
                matches!(err, EditError::UnsupportedVersion { .. }),
                "{text}: {err}"
            );
        }
        for v in crate::cni::version::SUPPORTED {
            let text =
                format!(r#"{{"cniVersion":"{v}","name":"n","plugins":[{{"type":"bridge"}}]}}"#);
            let dir = vec![f("10-n.conflist", &text)];
            assert_eq!(
                plan_insert(&dir, &dir[0], &entry()).unwrap().len(),
                1,
                "{v}"
            );
        }
    }

    #[test]
    fn config_file_validation() {
        let ok = [
            ("{}", json!({"type": "csum-offload"})),
            (
                r#"{"cniVersion":"0.4.0","name":"x","type":"csum-offload","drivers":{"veth":{"tx":false}}}"#,
                json!({"type": "csum-offload", "drivers": {"veth": {"tx": false}}}),
            ),
        ];
        for (text, want) in ok {
            assert_eq!(Entry::from_config(text).unwrap().as_value(), want, "{text}");
        }
        let bad = [
            ("", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"type":"tuning"}"#, "\"type\" must be \"csum-offload\""),
            (r#"{"prevResult":{}}"#, "prevResult"),
            (
                r#"{"hostInterfce":"eth0"}"#,
                "unknown field \"hostInterfce\"",
            ),
            (
                r#"{"drivers":{"txgbe":{"txcsum":false}}}"#,
                "unknown offload feature",
            ),
            (r#"{"apply":"pod"}"#, "apply must be"),
            (r#"{"capabilities":{"x":1}}"#, "libcni could not load"),
            (
                r#"{"dns":{"nameservers":"10.0.0.1"}}"#,
                "libcni could not load",
            ),
        ];
        for (text, want) in bad {
            let e = Entry::from_config(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e:?} should contain {want:?}");
        }
        assert_eq!(
            Entry::default_entry().as_value(),
            json!({"type": "csum-offload"})
        );
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
        assert!(plan_remove_all(&dir).is_empty());
        // Ours among others: written without it, the rest kept.
        let mut dir = vec![f("10-kindnet.conflist", KINDNET)];
        install(&mut dir, &entry()).unwrap();
        let snapshot = dir.clone();
        apply(&mut dir, &plan_remove_all(&snapshot));
        assert_eq!(
            read(&dir, "10-kindnet.conflist"),
            serde_json::from_str::<Value>(KINDNET).unwrap()
        );
        // Entries in every file go, not only the primary's.
        let mut dir = vec![
            with_entry(json!([{"type": "bridge"}, {"type": "csum-offload"}])),
            ConfFile::new(
                "20-m.conflist",
                render(
                    &json!({"cniVersion": "1.0.0", "name": "m", "plugins": [{"type": "csum-offload"}, {"type": "ptp"}]}),
                ),
            ),
        ];
        let snapshot = dir.clone();
        apply(&mut dir, &plan_remove_all(&snapshot));
        assert_eq!(
            read(&dir, "10-n.conflist")["plugins"],
            json!([{"type": "bridge"}])
        );
        assert_eq!(
            read(&dir, "20-m.conflist")["plugins"],
            json!([{"type": "ptp"}])
        );
        // A list of only our entry is removed rather than left empty.
        let dir = vec![with_entry(json!([{"type": "csum-offload"}]))];
        assert_eq!(
            plan_remove_all(&dir),
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
        apply(&mut dir, &plan_remove_all(&snapshot));
        assert_eq!(names(&dir), ["10-bridge.conflist"]);
        assert_eq!(
            read(&dir, "10-bridge.conflist")["plugins"][1],
            json!({"type": "istio-cni"})
        );
    }

    #[test]
    fn named_file_and_meta_plugins() {
        let list = r#"{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[{"type":"calico"},{"type":"portmap"}]}"#;
        let multus = r#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim","socketDir":"/run/multus/"}"#;
        let dir = vec![
            f("00-multus.conf", multus),
            f("10-calico.conflist", list),
            f("20-bad.conflist", "{"),
        ];
        assert_eq!(select_primary(&dir).primary.unwrap().name, "00-multus.conf");
        assert_eq!(delegating_plugin(&dir[0]).as_deref(), Some("multus-shim"));
        assert_eq!(delegating_plugin(&dir[1]), None);
        let sel = select_named(&dir, "10-calico.conflist");
        assert_eq!(sel.primary.unwrap().name, "10-calico.conflist");
        let sel = select_named(&dir, "20-bad.conflist");
        assert!(sel.primary.is_none() && sel.skipped.len() == 1);
        let sel = select_named(&dir, "30-missing.conflist");
        assert!(sel.primary.is_none() && sel.skipped.is_empty());
        let thick = r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"multus"}]}"#;
        assert_eq!(
            delegating_plugin(&f("00-m.conflist", thick)).as_deref(),
            Some("multus")
        );
    }

    #[test]
    fn names_runtimes_load() {
        for (name, want) in [
            ("10-a.conf", true),
            ("10-a.conflist", true),
            ("a.json", true),
            (".csum-offload.tmp-12", false),
            ("10-a.conf.csum-offload-backup", false),
            ("10-a.conf~", false),
            ("conf", false),
        ] {
            assert_eq!(is_config_name(name), want, "{name}");
        }
    }
}
