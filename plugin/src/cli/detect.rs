//! `csum-offload detect`: the uplink chain, the NIC driver(s) and the
//! settings this node's pods would get.

use super::CliError;
use crate::args::Args;
use crate::config::{self, Config};
use crate::offload::decision::decide;
use std::path::Path;

pub fn detect_command(mut args: Args) -> Result<String, CliError> {
    let host_interface = args.value("--host-interface")?;
    let config_path = args.value("--config")?;
    let as_json = args.flag("--json");
    let node_name = config::node_name_from(args.value("--node-name")?)
        .map_err(|e| CliError::Invalid("--node-name or NODE_NAME", e.to_string()))?;
    args.finish()?;
    let mut config = match config_path {
        Some(path) => config::load_file(Path::new(&path))?,
        None => Config::default(),
    };
    // Whose probe path and verdict to show: this node's, when named.
    config.node_name = node_name;
    if host_interface.is_some() {
        config.host_interface = host_interface;
    }
    let decision = decide(&config)?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&decision)?);
    }
    Ok(decision.to_string())
}
