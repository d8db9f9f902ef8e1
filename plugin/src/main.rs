use csum_offload::args::Args;
use csum_offload::cni::netconf::read_input;
use csum_offload::{cli, install};
use std::io::Write;

const HELP: &str = "\
csum-offload: CNI chained plugin that sets checksum offload on a pod's veth
pair according to the host NIC's driver (TX checksum off behind txgbe).

As a CNI plugin it is run by the container runtime with CNI_COMMAND set;
see docs/configuration.md for its config entry.

Operator commands:
  csum-offload detect [--host-interface IF] [--config FILE] [--json]
      show the uplink chain, the NIC driver and the settings pods would get
  csum-offload inspect --netns PATH [--ifname eth0] [--json]
      show the offload features of a pod's interface and of its host peer
  csum-offload install [--cni-conf-dir DIR] [--cni-bin-dir DIR] [--config FILE]
                       [--conf-file NAME.conflist] [--once | --check]
                       [--remove-binary] [--log-level LEVEL]
      copy this binary into the CNI bin dir and add the csum-offload entry
      (from FILE, default: built-in policy) to the node's primary network
      config (or NAME, for Multus); keep it there until SIGTERM/SIGINT,
      then remove it.
      --once: install and exit; --check: exit 0 only if the entry is in place
      (the DaemonSet's readiness probe). Defaults: /host/etc/cni/net.d,
      /host/opt/cni/bin; env CSUM_OFFLOAD_CNI_CONF_DIR, CSUM_OFFLOAD_CNI_BIN_DIR,
      CSUM_OFFLOAD_CONFIG, CSUM_OFFLOAD_CONF_FILE stand in for the flags.
  csum-offload uninstall [--cni-conf-dir DIR] [--cni-bin-dir DIR] [--remove-binary]
      remove the csum-offload entry from every network config (restoring a
      .conf that install converted); the binary stays unless --remove-binary
  csum-offload --version | --help
";

fn main() {
    // Set at all (even empty or not UTF-8): a runtime is calling, and it
    // must get a CNI result or error object.
    if let Some(command) = std::env::var_os("CNI_COMMAND") {
        // A bug must still reach the runtime as a CNI error, not as an
        // empty stdout: the reply is written once at the end, so nothing
        // partial precedes this.
        std::panic::set_hook(Box::new(|info| {
            let err = csum_offload::cni::Error::Internal(format!("bug: {info}"));
            eprintln!("csum-offload: {err}");
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(err.to_json(csum_offload::cni::version::CURRENT).as_bytes());
            let _ = out.flush();
            std::process::exit(1);
        }));
        let reply = match read_input(std::io::stdin().lock()) {
            Ok(stdin) => csum_offload::cni::run(&command, &stdin, |k| std::env::var_os(k)),
            Err(e) => csum_offload::cni::Error::from(e).into(),
        };
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(reply.stdout.as_bytes())
            .and_then(|_| out.flush());
        std::process::exit(reply.exit_code);
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let sub = if args.is_empty() {
        String::new()
    } else {
        args.remove(0)
    };
    let asks_help = args.iter().any(|a| a == "--help" || a == "-h");
    let boxed = |e: &dyn std::fmt::Display| e.to_string();
    let result = match sub.as_str() {
        _ if asks_help => Ok(usage_of(&sub)),
        "--version" | "-V" | "version" => Ok(format!("csum-offload {}", env!("CARGO_PKG_VERSION"))),
        "--help" | "-h" | "help" => Ok(HELP.trim_end().to_string()),
        "detect" => cli::detect_command(Args::new(args)).map_err(|e| boxed(&e)),
        "inspect" => cli::inspect_command(Args::new(args)).map_err(|e| boxed(&e)),
        "install" => install::install_command(Args::new(args)).map_err(|e| boxed(&e)),
        "uninstall" => install::uninstall_command(Args::new(args)).map_err(|e| boxed(&e)),
        "" => Err("no command given and CNI_COMMAND is not set; see --help".to_string()),
        other => Err(format!("unknown command {other:?}; see --help")),
    };
    match result {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("csum-offload: {e}");
            std::process::exit(2);
        }
    }
}

/// The HELP block of one subcommand (its usage line and the indented lines
/// under it), or the whole text for an unknown one.
fn usage_of(sub: &str) -> String {
    let head = format!("  csum-offload {sub}");
    let mut lines = HELP
        .lines()
        .skip_while(|l| !(l == &head || l.starts_with(&format!("{head} "))));
    let Some(first) = lines.next() else {
        return HELP.trim_end().to_string();
    };
    let rest = lines.take_while(|l| l.starts_with("    ") || l.starts_with("      "));
    std::iter::once(first.trim_start())
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n")
}
