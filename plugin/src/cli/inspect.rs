//! `csum-offload inspect`: the offload features of a pod's interface and
//! of its host peer, as the kernel reports them.

use super::CliError;
use crate::args::{Args, ArgsError};
use crate::kernel::ethtool;
use crate::offload::features::on_off;
use crate::offload::pod::PodSockets;
use crate::offload::tune::{End, Endpoint};
use crate::offload::veth::PodInterface;
use crate::offload::KernelError;
use serde_json::{json, Map};

pub fn inspect_command(mut args: Args) -> Result<String, CliError> {
    let netns = args
        .value("--netns")?
        .ok_or(ArgsError::Missing("--netns PATH"))?;
    let ifname = args.value("--ifname")?.unwrap_or_else(|| "eth0".into());
    let as_json = args.flag("--json");
    args.finish()?;
    let mut sockets = PodSockets::open(&netns)?;
    let found = sockets
        .locate(&ifname)
        .map_err(|e| KernelError::new("reading the pod's interface", e))?;
    let mut targets = Vec::new();
    match &found {
        PodInterface::Missing => return Err(CliError::NoInterface { ifname, netns }),
        PodInterface::NotVeth(link) => {
            // No host peer to show; the interface itself still is.
            eprintln!("note: {} is not a veth; showing it alone", link.describe());
            targets.push(Endpoint {
                end: End::Container,
                ifname: &link.name,
                fd: sockets.pod.fd(),
            });
        }
        PodInterface::Veth { container, host } => {
            targets.push(Endpoint {
                end: End::Container,
                ifname: &container.name,
                fd: sockets.pod.fd(),
            });
            match host {
                Ok(peer) => targets.push(Endpoint {
                    end: End::Host,
                    ifname: &peer.name,
                    fd: sockets.host.fd(),
                }),
                Err(why) => eprintln!("note: {why}"),
            }
        }
    }
    let mut report = Map::new();
    let mut text = String::new();
    for t in &targets {
        let kernel = |e| KernelError::new(t.ifname, e);
        let names = ethtool::feature_names(t.fd, t.ifname).map_err(kernel)?;
        let state = ethtool::features(t.fd, t.ifname, names.len()).map_err(kernel)?;
        let driver = ethtool::driver(t.fd, t.ifname).unwrap_or_default();
        let mut features = Map::new();
        text += &format!("{} interface {} (driver {driver}):\n", t.end, t.ifname);
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let (active, fixed) = (state.active(i), !state.changeable(i));
            text += &format!(
                "\t{name}: {}{}\n",
                on_off(active),
                if fixed { " [fixed]" } else { "" }
            );
            features.insert(name.clone(), json!({ "active": active, "fixed": fixed }));
        }
        report.insert(
            t.end.to_string(),
            json!({ "ifname": t.ifname, "driver": driver, "features": features }),
        );
    }
    if as_json {
        return Ok(serde_json::to_string_pretty(&report)?);
    }
    Ok(text.trim_end().to_string())
}
