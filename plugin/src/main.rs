use csum_offload::args::Args;
use csum_offload::{agent, cli, install};
use std::io::Write;

const HELP: &str = "\
csum-offload: CNI chained plugin that sets checksum offload on a pod's veth
pair according to the host NIC's driver (TX checksum off behind txgbe).

As a CNI plugin it is run by the container runtime with CNI_COMMAND set;
see docs/configuration.md for its config entry.

Operator commands:
  csum-offload detect [--host-interface IF] [--config FILE] [--node-name NAME] [--json]
      show the uplink chain, the NIC driver and the settings pods would get;
      --node-name (env NODE_NAME): whose probe.nodes path and verdict to show
  csum-offload inspect --netns PATH [--ifname eth0] [--json]
      show the offload features of a pod's interface and of its host peer
  csum-offload install [--cni-conf-dir DIR] [--cni-bin-dir DIR] [--config FILE]
                       [--conf-file NAME.conflist] [--runtime containerd|crio]
                       [--once | --check] [--remove-binary] [--log-level LEVEL]
      copy this binary into the CNI bin dir and add the csum-offload entry
      (from FILE, default: built-in policy) to the node's primary network
      config (or NAME, for Multus); keep it there until SIGTERM/SIGINT,
      then remove it.
      --once: install and exit; --check: exit 0 only if the entry is in place
      and this node's NIC is detected (the DaemonSet's readiness probe; it
      prints every reason it is not). --runtime: which runtime's rule picks
      the primary file (default: CRI-O's, and readiness reports where
      containerd's differs). Defaults: /host/etc/cni/net.d,
      /host/opt/cni/bin; env CSUM_OFFLOAD_CNI_CONF_DIR, CSUM_OFFLOAD_CNI_BIN_DIR,
      CSUM_OFFLOAD_CONFIG, CSUM_OFFLOAD_CONF_FILE, CSUM_OFFLOAD_RUNTIME stand
      in for the flags.
  csum-offload uninstall [--cni-conf-dir DIR] [--cni-bin-dir DIR] [--remove-binary]
      remove the csum-offload entry from every network config (restoring a
      .conf that install converted); the binary stays unless --remove-binary
  csum-offload agent [--config FILE] [--once [--dry-run]] [--netns-dir DIR]...
                     [--no-proc] [--bridge NAME]... [--ifname GLOB]...
                     [--exclude-ifname GLOB]... [--state-file FILE]
                     [--metrics-address ADDR] [--textfile FILE] [--resync SECONDS]
                     [--log-level LEVEL] [--restore-uplink-on-exit] [--node-name NAME]
      the node agent: give every container veth pair in this netns (any
      runtime: Docker, containerd, CRI-O, Podman) the policy of the node's
      NIC, at start, whenever a pair appears and whenever a feature drifts,
      until SIGTERM/SIGINT. FILE holds the same JSON as the plugin's entry
      (default: built-in policy). Peers' netns are found in DIR (default
      /run/netns and /run/docker/netns) and /proc/*/ns/net (unless
      --no-proc). --bridge, --ifname, --exclude-ifname limit which host ends
      it touches (the uplink never); GLOB: * ? [a-z] [!x], \\ escapes.
      --once: one pass, a summary, exit 0 when every pair conforms
      (changed or already set), 1 when any could not be
      set, 2 when the agent cannot run (bad config, another agent holds the
      lock); with --dry-run, change nothing and print what would change. Before its first change to an interface it records the
      original state in FILE of --state-file (/run/csum-offload/agent-state.jsonl).
      --metrics-address 127.0.0.1:9981 serves Prometheus metrics on /metrics;
      --textfile writes them for node_exporter. --resync: a full pass every
      SECONDS, 0 to 86400 (default 300; 0: never, events only).
      --restore-uplink-on-exit: at SIGTERM, when no other agent runs, put
      back the NICs apply \"uplink\" changed (daemon only).
      --node-name (env NODE_NAME, the DaemonSet sets it): this node's name,
      for its probe.nodes entry under detection \"probe\" or \"both\".
  csum-offload agent restore [--state-file FILE] [--netns-dir DIR]... [--no-proc] [--config FILE]
      put back the features the agent changed, on the container veth pairs
      that still exist (stop the agent first); --config only for its
      hostInterface. Exit 1 when a record could not be read or applied.
  csum-offload probe --target IP:PORT (--netns PATH [--ifname eth0] | --source IPV4)
                     [--bytes N] [--tries K] [--timeout-ms MS] [--state-file FILE]
                     [--config FILE] [--json]
      measure whether a pod's TCP with TX checksum offload on reaches TARGET
      (any TCP listener off the node), against the same transfer with it
      off: per try, one transfer each way, N bytes (32768) acknowledged
      within MS (1500), K tries (2). From a real pod's netns (its interface
      toggled, then put back exactly; a record in FILE,
      /run/csum-offload/probe-state.json, lets the next probe put it back
      if this one is killed) or a throwaway pod with address IPV4 (a veth
      and a host route, gone when the probe ends, even if killed).
      Exit 0 ok, 1 broken, 3 unreachable, 4 inconclusive, 2 usage or setup
      error. See docs/probe.md.
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
        let reply = csum_offload::cni::run_reader(&command, std::io::stdin().lock(), |k| {
            std::env::var_os(k)
        });
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
        "probe" => match cli::probe_command(Args::new(args)) {
            // The verdict is the exit code; the report is the output.
            Ok((text, code)) => {
                println!("{text}");
                std::process::exit(code);
            }
            Err(e) => Err(boxed(&e)),
        },
        "install" => install::install_command(Args::new(args)).map_err(|e| boxed(&e)),
        "uninstall" => install::uninstall_command(Args::new(args)).map_err(|e| boxed(&e)),
        "agent" => match agent::agent_command(Args::new(args)) {
            Ok(text) => Ok(text),
            // The summary of work that ran is the output, on stdout.
            Err(e @ agent::AgentError::Unmet(_)) => {
                println!("{e}");
                std::process::exit(e.exit_code());
            }
            Err(e) => Err(boxed(&e)),
        },
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
