//! Which network config file the runtime uses, judged the way libcni
//! (kubelet, CRI-O, containerd) loads them: config files end in `.conf`,
//! `.conflist` or `.json`; the runtime uses the first one in byte order
//! that parses; `.conflist` files hold a `plugins` list, the others a
//! single plugin with a `type`. `netconf` has Go's decoding rules for one
//! plugin config.

pub mod netconf;

use netconf::{Members, Undecodable};
use serde_json::Value;

/// Whether libcni would load a file of this name.
pub fn is_config_name(name: &str) -> bool {
    matches!(extension(name), Some("conf" | "conflist" | "json"))
}

pub(super) fn extension(name: &str) -> Option<&str> {
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
