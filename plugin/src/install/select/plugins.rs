//! Which plugins libcni runs from a config file it loads: the types of the
//! plugin configs as libcni decodes them (see netconf.rs), and, for a
//! `.conflist`, where libcni 1.3 finds more of them.
//!
//! Both runtimes turn a single-plugin file into a list with libcni's
//! ConfListFromConf, which decodes the plugin again from a Go map (keys
//! sorted), so its type is the one of that second decode; a conflist's
//! plugins are decoded from Go maps too. That is `Members::of`.

use super::netconf::Members;
use super::{extension, gojson, ConfFile};
use serde_json::Value;

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
}
