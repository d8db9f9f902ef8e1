//! Which network config file the runtime uses, judged the way libcni
//! loads them: config files end in `.conf`, `.conflist` or `.json`, are
//! taken in byte order of their names, `.conflist` files hold a `plugins`
//! list, the others a single plugin with a `type`. `gojson` reads JSON as
//! Go does, `netconf` has Go's decoding rules for one plugin config and
//! `libcni_version` libcni's choice of the chain's version.
//!
//! The runtimes differ on a file that fails to load (see `Runtime`):
//! containerd (go-cni's loadFromConfDir) fails the whole load on it, CRI-O
//! (ocicni's loadNetworks) logs it and takes the next one.

pub mod gojson;
pub mod netconf;
pub mod plugins;

use netconf::{Members, Undecodable};
use plugins::PluginDir;
use serde_json::{Map, Value};

/// Whether libcni would load a file of this name (Go's filepath.Ext).
pub fn is_config_name(name: &str) -> bool {
    is_config_name_bytes(name.as_bytes())
}

/// As `is_config_name`, for a name that may not be UTF-8.
pub fn is_config_name_bytes(name: &[u8]) -> bool {
    let ext = name
        .iter()
        .rposition(|&b| b == b'.')
        .map(|i| &name[i + 1..]);
    matches!(ext, Some(b"conf" | b"conflist" | b"json"))
}

pub(super) fn extension(name: &str) -> Option<&str> {
    name.rsplit_once('.').map(|(_, ext)| ext)
}

/// One config file as read from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    /// The name (with U+FFFD for bytes that are not UTF-8: see `raw_name`).
    pub name: String,
    pub bytes: Vec<u8>,
    /// Why the installer could not read the file (`bytes` is then empty).
    pub unread: Option<SkipReason>,
    /// The name's bytes, when they are not UTF-8.
    pub raw_name: Option<Vec<u8>>,
    /// For a conflist whose plugins libcni 1.3 also looks for in
    /// `<conf dir>/<name>/`: what is there (the snapshot reads it; `None`
    /// when not read).
    pub plugin_dir: Option<PluginDir>,
}

impl ConfFile {
    pub fn new(name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.to_string(),
            bytes: bytes.into(),
            unread: None,
            raw_name: None,
            plugin_dir: None,
        }
    }

    /// A file that could not be read, and why.
    pub fn unread(name: &str, why: SkipReason) -> Self {
        Self {
            unread: Some(why),
            ..Self::new(name, Vec::new())
        }
    }

    /// The bytes libcni sorts by (Go's sort.Strings on the path).
    pub fn sort_key(&self) -> &[u8] {
        self.raw_name.as_deref().unwrap_or(self.name.as_bytes())
    }
}

/// Why the runtime would not use a file, or why the installer cannot tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Empty,
    Invalid(String),
    NoType,
    /// The runtime cannot read it either (a looping or dangling symlink
    /// whose links stay in the conf dir, a symlink to a directory, a
    /// socket).
    Unreadable(String),
    /// The installer cannot tell what the runtime makes of it (it cannot
    /// read it while the runtime, root with every capability, can; a
    /// symlink that leads out of the conf dir and does not resolve in the
    /// installer's view; it is too large or too deep to judge).
    Unjudged(String),
    /// Reading it blocks (a FIFO): libcni's os.ReadFile waits for a writer
    /// forever, and the runtime's config load with it.
    Hangs(String),
}

impl SkipReason {
    /// Whether the runtime fails to load the file too (so that it skips
    /// it, or, containerd, fails the whole load), as opposed to the
    /// installer not knowing.
    pub fn runtime_fails(&self) -> bool {
        !matches!(self, SkipReason::Unjudged(_) | SkipReason::Hangs(_))
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Empty => f.write_str("the file is empty"),
            SkipReason::Invalid(why) => write!(f, "not a valid network config: {why}"),
            SkipReason::NoType => f.write_str("no plugin \"type\" (a conflist in a .conf file?)"),
            SkipReason::Unreadable(why) => write!(f, "the runtime cannot read it either: {why}"),
            SkipReason::Unjudged(why) | SkipReason::Hangs(why) => f.write_str(why),
        }
    }
}

/// Whose rule picks the primary file: the installer is told which runtime
/// the node runs (`--runtime`, `CSUM_OFFLOAD_RUNTIME`), or holds itself to
/// both rules at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// containerd's CRI (go-cni): the first file by name is the network;
    /// if it fails to load, the whole load fails and the node has no pod
    /// network. Files after it are never read.
    Containerd,
    /// CRI-O (ocicni): every file is loaded; one that fails is logged and
    /// skipped; the first that loads is the default network.
    Crio,
    /// Not told: the entry goes where CRI-O looks, and where the two
    /// rules disagree (a file before it that fails) readiness says so.
    #[default]
    Any,
}

impl Runtime {
    pub const NAMES: &'static [&'static str] = &["containerd", "crio", "any"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "containerd" => Some(Self::Containerd),
            "crio" | "cri-o" => Some(Self::Crio),
            "any" | "" => Some(Self::Any),
            _ => None,
        }
    }
}

/// What keeps the node from being covered, found while selecting. The
/// file is named as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectProblem {
    #[error("{file}: {why}; so the installer cannot tell which file the runtime uses, and changes nothing until it can")]
    Unknown { file: String, why: SkipReason },
    #[error("{file}: {why}; containerd fails to load the whole conf dir on it, so the node has no pod network until it is fixed or removed{}", crio_note(.crio_uses))]
    ContainerdFails {
        file: String,
        why: SkipReason,
        /// The file CRI-O uses instead (where the entry went), if any.
        crio_uses: Option<String>,
    },
    #[error("{file}: {why}; CRI-O loads every config file and its load hangs on this one")]
    CrioHangs { file: String, why: SkipReason },
    #[error("{file}: the runtime uses this file, but its name is not UTF-8 and csum-offload does not edit such files; rename it")]
    NotUtf8Name { file: String },
}

fn crio_note(crio_uses: &Option<String>) -> String {
    match crio_uses {
        Some(f) => format!(
            " (CRI-O skips it and uses {f}, which has the entry; on a CRI-O node set CSUM_OFFLOAD_RUNTIME=crio)"
        ),
        None => String::new(),
    }
}

/// The file the runtime would use, and what stands in the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection<'a> {
    pub primary: Option<&'a ConfFile>,
    /// Files before the primary that the runtime skips (logged).
    pub skipped: Vec<(&'a ConfFile, SkipReason)>,
    /// Why the runtime's file is not known or not editable: nothing may
    /// be written while this is set.
    pub blocking: Option<SelectProblem>,
    /// What makes the node not ready although the entry can go in.
    pub problems: Vec<SelectProblem>,
}

/// The config files in the order libcni takes them.
fn in_load_order(files: &[ConfFile]) -> Vec<&ConfFile> {
    let mut sorted: Vec<&ConfFile> = files
        .iter()
        .filter(|f| is_config_name_bytes(f.sort_key()))
        .collect();
    sorted.sort_by(|a, b| a.sort_key().cmp(b.sort_key()));
    sorted
}

/// Picks the primary network config under `runtime`'s rule (see
/// `Runtime`).
pub fn select(files: &[ConfFile], runtime: Runtime) -> Selection<'_> {
    let sorted = in_load_order(files);
    let mut sel = Selection::default();
    let mut first_failure = None;
    let mut rest = sorted.len();
    for (i, &file) in sorted.iter().enumerate() {
        match check_loadable(file) {
            Ok(()) => {
                rest = i + 1;
                if file.raw_name.is_some() {
                    sel.blocking = Some(SelectProblem::NotUtf8Name {
                        file: file.name.clone(),
                    });
                } else {
                    sel.primary = Some(file);
                }
                break;
            }
            Err(why) if !why.runtime_fails() => {
                rest = i + 1;
                sel.blocking = Some(SelectProblem::Unknown {
                    file: file.name.clone(),
                    why,
                });
                break;
            }
            Err(why) if runtime == Runtime::Containerd => {
                sel.skipped.push((file, why.clone()));
                sel.blocking = Some(SelectProblem::ContainerdFails {
                    file: file.name.clone(),
                    why,
                    crio_uses: None,
                });
                return sel;
            }
            Err(why) => {
                first_failure.get_or_insert((file, why.clone()));
                sel.skipped.push((file, why));
            }
        }
    }
    if runtime == Runtime::Any {
        if let (Some((file, why)), Some(primary)) = (first_failure, sel.primary) {
            sel.problems.push(SelectProblem::ContainerdFails {
                file: file.name.clone(),
                why,
                crio_uses: Some(primary.name.clone()),
            });
        }
    }
    // CRI-O reads the files after its default network too; containerd
    // stops at its one network.
    let read_after = if runtime == Runtime::Containerd {
        &[][..]
    } else {
        &sorted[rest..]
    };
    for file in read_after {
        if let Some(why @ SkipReason::Hangs(_)) = &file.unread {
            sel.problems.push(SelectProblem::CrioHangs {
                file: file.name.clone(),
                why: why.clone(),
            });
        }
    }
    sel
}

/// The first file that loads, skipping the ones that fail (CRI-O's rule).
pub fn select_primary(files: &[ConfFile]) -> Selection<'_> {
    select(files, Runtime::Crio)
}

/// Selects a file named by the operator (`--conf-file`) instead of the
/// first one: for setups where the runtime's first file is a meta plugin
/// that delegates to it (Multus).
pub fn select_named<'a>(files: &'a [ConfFile], name: &str) -> Selection<'a> {
    let mut sel = Selection::default();
    let Some(file) = files
        .iter()
        .find(|f| f.name == name && f.raw_name.is_none())
    else {
        return sel;
    };
    match check_loadable(file) {
        Ok(()) => sel.primary = Some(file),
        Err(why) if !why.runtime_fails() => {
            sel.blocking = Some(SelectProblem::Unknown {
                file: file.name.clone(),
                why,
            })
        }
        Err(why) => sel.skipped.push((file, why)),
    }
    sel
}

/// Meta plugins that run other network configs for the pod: our entry
/// belongs in the config they delegate to, not in theirs.
const DELEGATING_TYPES: &[&str] = &["multus", "multus-shim"];

/// The delegating plugin type in a config, if any: among the plugin types
/// as libcni decodes them (`plugins::runs`: keys in any case, so
/// `"TYPE": "multus"` is multus too).
pub fn delegating_plugin(file: &ConfFile) -> Option<String> {
    plugins::runs(file)?
        .types
        .into_iter()
        .find(|t| DELEGATING_TYPES.contains(&t.as_str()))
}

/// The spec version libcni implements (pkg/version.Current, libcni 1.2+).
const LIBCNI_CURRENT: (i64, i64, i64) = (1, 1, 0);

/// Why libcni refuses a conflist's `cniVersion` or `cniVersions`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionListError {
    #[error("cniVersion is not a string")]
    VersionNotString,
    #[error("cniVersions is not a list")]
    NotAList,
    #[error("cniVersions[{0}] is not a string")]
    ItemNotString(usize),
    /// `field` is `cniVersion` or `cniVersions[i]`.
    #[error("{field}: invalid version {version:?}{}", match .too_many_parts { true => ": too many parts", false => "" })]
    Unparsable {
        field: String,
        version: String,
        too_many_parts: bool,
    },
}

/// libcni's pkg/version.ParseVersion: up to three dot-separated integers
/// (Go's Atoi, so a sign is allowed); "" is 0.1.0. `field` names where
/// `v` came from, for the error.
fn go_version(v: &str, field: impl Fn() -> String) -> Result<(i64, i64, i64), VersionListError> {
    if v.is_empty() {
        return Ok((0, 1, 0));
    }
    let bad = |too_many_parts| VersionListError::Unparsable {
        field: field(),
        version: v.to_string(),
        too_many_parts,
    };
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() >= 4 {
        return Err(bad(true));
    }
    let num = |i: usize| match parts.get(i) {
        None => Ok(0),
        Some(p) => p.parse::<i64>().map_err(|_| bad(false)),
    };
    Ok((num(0)?, num(1)?, num(2)?))
}

/// The version a runtime with libcni 1.2 or later runs a conflist's chain
/// at: with a `cniVersions` list, versions newer than libcni's own (1.1.0)
/// are skipped and the highest of the rest (and `cniVersion`) is used;
/// without one, `cniVersion`. An error is a list libcni refuses to load.
/// Older libcni (containerd 1.x) ignores `cniVersions` and uses
/// `cniVersion`.
pub fn libcni_version(list: &Map<String, Value>) -> Result<String, VersionListError> {
    let version = match list.get("cniVersion") {
        None => String::new(),
        Some(Value::String(v)) => v.clone(),
        Some(_) => return Err(VersionListError::VersionNotString),
    };
    let Some(all) = list.get("cniVersions") else {
        return Ok(version);
    };
    let Some(all) = all.as_array() else {
        return Err(VersionListError::NotAList);
    };
    let mut usable = Vec::new();
    for (i, v) in all.iter().enumerate() {
        let Some(v) = v.as_str() else {
            return Err(VersionListError::ItemNotString(i));
        };
        let parsed = go_version(v, || format!("cniVersions[{i}]"))?;
        if parsed <= LIBCNI_CURRENT {
            usable.push((parsed, v.to_string()));
        }
    }
    if !version.is_empty() {
        let parsed = go_version(&version, || "cniVersion".to_string())?;
        if parsed <= LIBCNI_CURRENT {
            usable.push((parsed, version.clone()));
        }
    }
    Ok(usable
        .into_iter()
        .max_by(|a, b| a.0.cmp(&b.0))
        .map_or(version, |(_, v)| v))
}

/// libcni's checks: a conflist needs a string `name`, well-typed list
/// options and a non-empty `plugins` list of plugin configs; a single
/// config is one plugin config. Each plugin config must decode into
/// libcni's NetConf and have a `type` (see netconf.rs). JSON is read as Go
/// reads it (gojson.rs).
pub fn check_loadable(file: &ConfFile) -> Result<(), SkipReason> {
    if let Some(why) = &file.unread {
        return Err(why.clone());
    }
    if file.bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SkipReason::Empty);
    }
    let json_err = |e: gojson::GoJsonError| match e.runtime_fails() {
        true => SkipReason::Invalid(format!("invalid JSON: {e}")),
        false => SkipReason::Unjudged(format!("{e}")),
    };
    let value: Value = gojson::parse(&file.bytes).map_err(json_err)?;
    let Value::Object(obj) = &value else {
        return Err(SkipReason::Invalid("not a JSON object".into()));
    };
    if extension(&file.name) != Some("conflist") {
        // Decoded straight from the file: duplicate keys count.
        let members: Members = gojson::parse_as(&file.bytes).map_err(json_err)?;
        netconf::check(&members).map_err(SkipReason::from)?;
        // Both runtimes then turn the file into a one-plugin list
        // (libcni's ConfListFromConf): it decodes the file into a Go map
        // and encodes it again, keys sorted, before the plugin is decoded
        // a second time. Where "Type" and "type" both appear, that second
        // decode can end with no type although the first had one, and the
        // whole file fails to load.
        return match Members::of(&value).map(|sorted| netconf::check(&sorted)) {
            Some(Err(Undecodable::NoType)) => Err(SkipReason::Invalid(
                "\"type\" is empty once libcni turns the file into a list (it sorts the keys, \
                 so of two keys differing in case the lower-case one wins)"
                    .into(),
            )),
            Some(Err(other)) => Err(other.into()),
            Some(Ok(())) | None => Ok(()),
        };
    }
    if !obj.get("name").is_some_and(Value::is_string) {
        return Err(SkipReason::Invalid("no \"name\" string".into()));
    }
    libcni_version(obj).map_err(|e| SkipReason::Invalid(e.to_string()))?;
    for key in ["disableCheck", "disableGC", "loadOnlyInlinedPlugins"] {
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
        Some(_) => return Err(SkipReason::Invalid("\"plugins\" is not a list".into())),
        // libcni 1.3 loads the plugins of such a list from
        // <conf dir>/<name>/*.conf; older ones fail on it.
        None => {
            return Err(SkipReason::Unjudged(
                "no \"plugins\" list: libcni 1.3 and later load its plugins from the \
                 <name>/ directory next to it, older ones fail on it; csum-offload does not \
                 follow such lists"
                    .into(),
            ))
        }
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
    // libcni 1.3 then appends the plugins of <conf dir>/<name>/*.conf, and
    // one it cannot read or decode fails the whole list.
    match &file.plugin_dir {
        Some(PluginDir::Fails(why)) => return Err(SkipReason::Invalid(why.clone())),
        Some(PluginDir::Unjudged(why)) => return Err(SkipReason::Unjudged(why.clone())),
        _ => {}
    }
    Ok(())
}

impl From<Undecodable> for SkipReason {
    fn from(p: Undecodable) -> Self {
        match p {
            Undecodable::Invalid(why) => SkipReason::Invalid(why),
            Undecodable::NoType => SkipReason::NoType,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE_CONF: &str = r#"{"cniVersion":"1.0.0","name":"mynet","type":"bridge","bridge":"cni0","zeta":1,"alpha":{"b":2,"a":1}}"#;

    fn f(name: &str, text: &str) -> ConfFile {
        ConfFile::new(name, text.as_bytes())
    }

    #[test]
    fn a_list_whose_plugin_dir_fails_does_not_load() {
        // Found by the conf dir fuzz run: a list named "" reads the conf
        // dir itself as its plugin dir, and an empty .conf there fails
        // libcni's load of the list; containerd then loads nothing.
        let list = r#"{"cniVersion":"1.0.0","name":"","plugins":[{"type":"ptp"}]}"#;
        let mut bad = f("10-a.conflist", list);
        bad.plugin_dir = Some(PluginDir::Fails("05-x.conf: invalid JSON".into()));
        assert!(
            matches!(check_loadable(&bad), Err(SkipReason::Invalid(w)) if w.contains("05-x.conf"))
        );
        let next = f(
            "20-b.conflist",
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"ptp"}]}"#,
        );
        let dir = [bad.clone(), next];
        assert!(matches!(
            select(&dir, Runtime::Containerd).blocking,
            Some(SelectProblem::ContainerdFails { .. })
        ));
        assert_eq!(
            select(&dir, Runtime::Crio).primary.unwrap().name,
            "20-b.conflist"
        );
        bad.plugin_dir = Some(PluginDir::Unjudged("x.conf: 1e400".into()));
        assert!(matches!(
            select(&[bad.clone()], Runtime::Crio).blocking,
            Some(SelectProblem::Unknown { .. })
        ));
        bad.plugin_dir = Some(PluginDir::Plugins(vec![plugins::DirPlugin {
            path: "/etc/cni/net.d/net/90-x.conf".into(),
            plugin_type: "tuning".into(),
        }]));
        assert_eq!(check_loadable(&bad), Ok(()));
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
        // Found by the conf dir fuzz run: Go matches the key in any case.
        let upper = r#"{"cniVersion":"0.4.0","name":"net","TYPE":"multus"}"#;
        assert_eq!(
            delegating_plugin(&f("00-m.conf", upper)).as_deref(),
            Some("multus")
        );
        let upper_list = r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"Type":"multus-shim"}]}"#;
        assert_eq!(
            delegating_plugin(&f("00-m.conflist", upper_list)).as_deref(),
            Some("multus-shim")
        );
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
    fn libcni_picks_the_chains_version() {
        let list = |extra: &str| -> Map<String, Value> {
            serde_json::from_str(&format!(
                r#"{{"name":"n"{extra},"plugins":[{{"type":"a"}}]}}"#
            ))
            .unwrap()
        };
        // (members, the version libcni 1.2+ runs the chain at)
        let ok = [
            (r#","cniVersion":"1.0.0""#, "1.0.0"),
            ("", ""),
            // Versions newer than libcni's own are skipped, the highest
            // of the rest wins (cniVersion counts among them).
            (
                r#","cniVersion":"1.1.0","cniVersions":["1.1.0","9.0.0"]"#,
                "1.1.0",
            ),
            (
                r#","cniVersion":"0.4.0","cniVersions":["1.0.0","2.0.0"]"#,
                "1.0.0",
            ),
            (r#","cniVersions":["0.3.1","1.0.0"]"#, "1.0.0"),
            (r#","cniVersion":"1.0.0","cniVersions":["9.9.9"]"#, "1.0.0"),
            (r#","cniVersion":"3.0.0","cniVersions":["9.9.9"]"#, "3.0.0"),
            (r#","cniVersions":[]"#, ""),
        ];
        for (extra, want) in ok {
            assert_eq!(libcni_version(&list(extra)).as_deref(), Ok(want), "{extra}");
        }
        let unparsable =
            |field: &str, version: &str, too_many_parts| VersionListError::Unparsable {
                field: field.into(),
                version: version.into(),
                too_many_parts,
            };
        for (bad, want) in [
            (r#","cniVersion":1"#, VersionListError::VersionNotString),
            (r#","cniVersions":"1.0.0""#, VersionListError::NotAList),
            (r#","cniVersions":[1]"#, VersionListError::ItemNotString(0)),
            (
                r#","cniVersions":["1.0.0.0"]"#,
                unparsable("cniVersions[0]", "1.0.0.0", true),
            ),
            (
                r#","cniVersions":["x"]"#,
                unparsable("cniVersions[0]", "x", false),
            ),
            (
                r#","cniVersion":"1.x","cniVersions":["1.0.0"]"#,
                unparsable("cniVersion", "1.x", false),
            ),
        ] {
            let err = libcni_version(&list(bad)).unwrap_err();
            assert_eq!(err, want, "{bad}");
            let text = format!(r#"{{"name":"n"{bad},"plugins":[{{"type":"a"}}]}}"#);
            assert!(
                matches!(
                    check_loadable(&f("10-n.conflist", &text)),
                    Err(SkipReason::Invalid(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            unparsable("cniVersions[0]", "1.0.0.0", true).to_string(),
            r#"cniVersions[0]: invalid version "1.0.0.0": too many parts"#
        );
        assert_eq!(
            unparsable("cniVersion", "1.x", false).to_string(),
            r#"cniVersion: invalid version "1.x""#
        );
    }

    #[test]
    fn files_are_judged_as_go_reads_them() {
        let list =
            |plugins: &str| format!(r#"{{"cniVersion":"1.0.0","name":"n","plugins":[{plugins}]}}"#);
        // Loaded by libcni, so loadable here too.
        let mut bytes = list(r#"{"type":"bridge","x":"AB"}"#).into_bytes();
        let at = bytes.windows(2).position(|w| w == b"AB").unwrap();
        bytes[at] = 0xff;
        bytes[at + 1] = 0xc3;
        let invalid_utf8_raw = ConfFile::new("10-n.conflist", bytes);
        assert_eq!(check_loadable(&invalid_utf8_raw), Ok(()));
        let surrogate = f("10-n.conflist", &list(r#"{"type":"bridge","x":"\ud800"}"#));
        assert_eq!(check_loadable(&surrogate), Ok(()));
        let conflist_keys = f("10-n.conflist", &list(r#"{"type":"bridge","Type":""}"#));
        assert_eq!(check_loadable(&conflist_keys), Ok(()));
        // A .conf is decoded twice: in file order (the last key wins),
        // then with its keys sorted once libcni makes it a list. Both must
        // leave a type.
        let conf = |text: &str| f("10-n.conf", text);
        assert!(matches!(
            check_loadable(&conf(r#"{"name":"n","type":"","Type":"bridge"}"#)),
            Err(SkipReason::Invalid(why)) if why.contains("turns the file into a list")
        ));
        assert_eq!(
            check_loadable(&conf(r#"{"name":"n","Type":"","type":"bridge"}"#)),
            Ok(())
        );
        assert_eq!(
            check_loadable(&conf(r#"{"name":"n","Type":"bridge","type":""}"#)),
            Err(SkipReason::NoType)
        );
        assert_eq!(
            check_loadable(&conf(r#"{"name":"n","Type":"bridge"}"#)),
            Ok(())
        );
        // Deeper than csum-offload reads, within Go's limit: not skipped,
        // not judged.
        let deep = |levels: usize| {
            let inner = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            f(
                "10-n.conflist",
                &list(&format!(r#"{{"type":"bridge","x":{inner}}}"#)),
            )
        };
        assert!(matches!(
            check_loadable(&deep(200)),
            Err(SkipReason::Unjudged(_))
        ));
        assert!(matches!(
            check_loadable(&deep(10_001)),
            Err(SkipReason::Invalid(_))
        ));
        assert_eq!(check_loadable(&deep(100)), Ok(()));
    }

    #[test]
    fn each_runtimes_rule() {
        let good = r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#;
        let names = |sel: &Selection| {
            (
                sel.primary.map(|p| p.name.clone()),
                sel.skipped
                    .iter()
                    .map(|(f, _)| f.name.clone())
                    .collect::<Vec<_>>(),
            )
        };
        // An invalid first file: containerd fails the whole load, CRI-O
        // takes the next file, and not knowing means both.
        let dir = vec![f("05-bad.conflist", "{"), f("10-good.conflist", good)];
        let sel = select(&dir, Runtime::Containerd);
        assert_eq!(names(&sel), (None, vec!["05-bad.conflist".to_string()]));
        assert!(matches!(
            sel.blocking,
            Some(SelectProblem::ContainerdFails {
                crio_uses: None,
                ..
            })
        ));
        let sel = select(&dir, Runtime::Crio);
        assert_eq!(names(&sel).0.as_deref(), Some("10-good.conflist"));
        assert!(sel.blocking.is_none() && sel.problems.is_empty());
        let sel = select(&dir, Runtime::Any);
        assert_eq!(names(&sel).0.as_deref(), Some("10-good.conflist"));
        assert!(sel.blocking.is_none());
        let problem = sel.problems[0].to_string();
        assert!(
            problem.contains("containerd fails to load the whole conf dir")
                && problem.contains("CRI-O skips it and uses 10-good.conflist"),
            "{problem}"
        );
        // A file the installer cannot read before the candidate: no
        // runtime's choice is known; nothing is selected.
        let denied = SkipReason::Unjudged("Permission denied".into());
        let dir = vec![
            ConfFile::unread("05-secret.conflist", denied.clone()),
            f("10-good.conflist", good),
        ];
        for runtime in [Runtime::Containerd, Runtime::Crio, Runtime::Any] {
            let sel = select(&dir, runtime);
            assert!(sel.primary.is_none(), "{runtime:?}");
            assert_eq!(
                sel.blocking,
                Some(SelectProblem::Unknown {
                    file: "05-secret.conflist".into(),
                    why: denied.clone()
                })
            );
        }
        // After the primary, it does not matter; a FIFO does for CRI-O,
        // which reads every file.
        let fifo = SkipReason::Hangs("is a FIFO".into());
        let dir = vec![
            f("10-good.conflist", good),
            ConfFile::unread("20-secret.conflist", denied.clone()),
            ConfFile::unread("30-fifo.conf", fifo.clone()),
            ConfFile::unread("40-loop.conf", SkipReason::Unreadable("loop".into())),
        ];
        let sel = select(&dir, Runtime::Containerd);
        assert_eq!(names(&sel).0.as_deref(), Some("10-good.conflist"));
        assert!(sel.problems.is_empty() && sel.blocking.is_none());
        for runtime in [Runtime::Crio, Runtime::Any] {
            let sel = select(&dir, runtime);
            assert_eq!(names(&sel).0.as_deref(), Some("10-good.conflist"));
            assert_eq!(
                sel.problems,
                vec![SelectProblem::CrioHangs {
                    file: "30-fifo.conf".into(),
                    why: fifo.clone()
                }]
            );
        }
        // A file the runtime cannot read either is skipped like an invalid one.
        let dir = vec![
            ConfFile::unread("05-loop.conflist", SkipReason::Unreadable("loop".into())),
            f("10-good.conflist", good),
        ];
        assert_eq!(
            names(&select(&dir, Runtime::Crio)).0.as_deref(),
            Some("10-good.conflist")
        );
        // A name that is not UTF-8 sorts by its bytes and blocks when it
        // is the runtime's file.
        let mut odd = f("10-\u{FFFD}.conflist", good);
        odd.raw_name = Some(b"10-\xff.conflist".to_vec());
        let dir = vec![f("20-a.conflist", good), odd.clone()];
        let sel = select(&dir, Runtime::Any);
        assert!(sel.primary.is_none());
        assert!(matches!(
            sel.blocking,
            Some(SelectProblem::NotUtf8Name { .. })
        ));
        // By the lossy name (EF BF BD) it would sort first; by its bytes
        // (FF) it sorts after U+FFFF (EF BF BF).
        let dir = vec![f("10-\u{FFFF}.conflist", good), odd];
        assert_eq!(
            names(&select(&dir, Runtime::Any)).0.as_deref(),
            Some("10-\u{FFFF}.conflist")
        );
        assert!(
            is_config_name_bytes(b"10-\xff.conflist") && !is_config_name_bytes(b"10-\xff.conf~")
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
