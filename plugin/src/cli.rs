//! Operator commands on the same binary: `detect` and `inspect`.

use crate::config::ApplyTo;
use crate::config::PluginConfig;
use crate::detect::{self, Detection};
use crate::ethtool;
use crate::netlink::RouteSocket;
use crate::offload::{self, PodSockets, Target, Targets};
use crate::policy::Policy;
use serde_json::{json, Map, Value};

/// Simple `--flag value` / `--flag` argument reader.
pub struct Args {
    args: Vec<String>,
}

impl Args {
    pub fn new(args: Vec<String>) -> Self {
        Self { args }
    }

    /// Takes `--name VALUE` (or `--name=VALUE`).
    pub fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        let prefix = format!("{name}=");
        if let Some(pos) = self.args.iter().position(|a| a.starts_with(&prefix)) {
            return Ok(Some(self.args.remove(pos)[prefix.len()..].to_string()));
        }
        let Some(pos) = self.args.iter().position(|a| a == name) else {
            return Ok(None);
        };
        if pos + 1 >= self.args.len() {
            return Err(format!("{name} needs a value"));
        }
        self.args.remove(pos);
        Ok(Some(self.args.remove(pos)))
    }

    pub fn flag(&mut self, name: &str) -> bool {
        match self.args.iter().position(|a| a == name) {
            Some(pos) => {
                self.args.remove(pos);
                true
            }
            None => false,
        }
    }

    /// Fails on anything not consumed.
    pub fn finish(self) -> Result<(), String> {
        match self.args.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument {a:?}; see --help")),
        }
    }
}

/// Reads a plugin config entry from a JSON file (a conflist entry without
/// cniVersion is fine) to show what it would do.
pub fn load_config(path: &str) -> Result<PluginConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut value: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("cniVersion").or_insert_with(|| json!("1.0.0"));
    }
    PluginConfig::parse(value.to_string().as_bytes()).map_err(|e| format!("{path}: {e}"))
}

pub fn detect_command(mut args: Args) -> Result<String, String> {
    let host_interface = args.value("--host-interface")?;
    let config = args.value("--config")?;
    let as_json = args.flag("--json");
    args.finish()?;
    let (policy, host_interface, host_driver) = match config {
        Some(path) => {
            let c = load_config(&path)?;
            (c.policy, host_interface.or(c.host_interface), c.host_driver)
        }
        None => (Policy::built_in(), host_interface, None),
    };
    let detection = match host_driver {
        Some(driver) => {
            Detection::from_driver(&policy, &driver).ignoring_interface(host_interface.as_deref())
        }
        None => {
            let mut socket = RouteSocket::open().map_err(|e| format!("netlink socket: {e}"))?;
            detect::detect(&mut socket, host_interface.as_deref(), &policy)?
        }
    };
    if as_json {
        return serde_json::to_string_pretty(&detection).map_err(|e| e.to_string());
    }
    Ok(describe_detection(&detection))
}

/// The text `detect` prints and the installer logs.
pub fn describe_detection(d: &Detection) -> String {
    let mut out = String::new();
    if !d.start.is_empty() {
        out += &format!("uplink: {} (from {})\n", d.start.join(", "), d.how);
    } else {
        out += &format!("uplink: not detected ({})\n", d.how);
    }
    for edge in &d.chain {
        out += &format!("  {edge}\n");
    }
    for nic in &d.nics {
        let name = if nic.name.is_empty() {
            "(hostDriver)"
        } else {
            &nic.name
        };
        out += &format!(
            "nic: {name} driver: {} -> {} [{}]\n",
            nic.driver, nic.settings, nic.source
        );
    }
    out += &format!("settings applied to pod veths: {}", d.settings);
    out
}

pub fn inspect_command(mut args: Args) -> Result<String, String> {
    let netns = args.value("--netns")?.ok_or("--netns PATH is required")?;
    let ifname = args.value("--ifname")?.unwrap_or_else(|| "eth0".into());
    let as_json = args.flag("--json");
    args.finish()?;
    let mut sockets = PodSockets::open(&netns).map_err(|e| e.to_string())?;
    let targets =
        match offload::targets(&mut sockets, &ifname, ApplyTo::Both).map_err(|e| e.to_string())? {
            Targets::Missing => return Err(format!("{ifname} does not exist in {netns}")),
            Targets::NotVeth(what) => {
                // No host peer to show; the interface itself still is.
                eprintln!("note: {what} is not a veth; showing it alone");
                vec![Target {
                    side: offload::Side::Container,
                    ifname: ifname.clone(),
                    fd: sockets.pod.fd(),
                }]
            }
            Targets::Veth {
                targets,
                unreachable,
            } => {
                for why in unreachable {
                    eprintln!("note: {why}");
                }
                targets
            }
        };
    let mut report = Map::new();
    let mut text = String::new();
    for t in &targets {
        let names =
            ethtool::feature_names(t.fd, &t.ifname).map_err(|e| format!("{}: {e}", t.ifname))?;
        let state = ethtool::features(t.fd, &t.ifname, names.len())
            .map_err(|e| format!("{}: {e}", t.ifname))?;
        let driver = ethtool::driver(t.fd, &t.ifname).unwrap_or_default();
        let mut features = Map::new();
        text += &format!("{} interface {} (driver {driver}):\n", t.side, t.ifname);
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let (active, fixed) = (state.active(i), !state.changeable(i));
            let on = if active { "on" } else { "off" };
            text += &format!("\t{name}: {on}{}\n", if fixed { " [fixed]" } else { "" });
            features.insert(name.clone(), json!({ "active": active, "fixed": fixed }));
        }
        report.insert(
            t.side.to_string(),
            json!({ "ifname": t.ifname, "driver": driver, "features": features }),
        );
    }
    if as_json {
        return serde_json::to_string_pretty(&report).map_err(|e| e.to_string());
    }
    Ok(text.trim_end().to_string())
}
