//! Installer mode, a front end over the core: `csum-offload install` puts
//! the binary into the node's CNI bin dir and our entry into its primary
//! network config, and keeps it there; `csum-offload uninstall` takes it
//! out again. The DaemonSet runs `install`; see docs/install.md.
//!
//! - `select`: which config file the runtime uses (libcni's rules).
//! - `entry`: the entry, from the `--config` file.
//! - `edit`: the steps that put the entry in or take it out (pure).
//! - `snapshot`: reading the conf dir without blocking.
//! - `files`: running the steps; `commit`: how each write lands.
//! - `pass`: one pass over the conf dir (install, `--once`, `--check`).
//! - `readiness`: `--check`, and detection as the plugin runs it.
//! - `in_use`: which configs still run the plugin (the binary stays).
//! - `watch`: the DaemonSet's loop; `handover`, `throttle`: its helpers.

mod commit;
pub mod edit;
pub mod entry;
mod files;
mod handover;
mod in_use;
mod pass;
mod readiness;
pub mod select;
mod snapshot;
mod throttle;
mod watch;

use crate::args::{Args, ArgsError};
use crate::config::{self, LoadError};
use crate::logger::{self, LevelError};
use crate::offload::nic_record::RECORD_FILE;
use crate::offload::nics;
use commit::FsError;
use edit::EditError;
use entry::{Entry, InstallerConfigError, PLUGIN_TYPE};
use files::Removal;
use pass::{PassMode, PassOutcome};
use readiness::Unready;
use select::Runtime;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONF_DIR: &str = "/host/etc/cni/net.d";
pub const DEFAULT_BIN_DIR: &str = "/host/opt/cni/bin";

/// Why an installer command failed (or, for `--check`, why the node is not
/// ready); printed after "csum-offload: ".
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error("--conf-file must be the name of a .conflist file in the conf dir, got {0:?}")]
    ConfFileName(String),
    #[error("--log-level {0}")]
    LogLevel(#[from] LevelError),
    #[error("--runtime must be one of {}, got {:?}", Runtime::NAMES.join(", "), .0)]
    Runtime(String),
    #[error(transparent)]
    ReadConfig(#[from] LoadError),
    #[error("{}: {source}", path.display())]
    Entry {
        path: PathBuf,
        source: InstallerConfigError,
    },
    #[error("{}: {source}", path.display())]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot find this binary: {0}")]
    CurrentExe(#[source] io::Error),
    #[error("cannot install the binary: {0}")]
    InstallBinary(#[source] FsError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("no network config in {} to add the entry to (is the primary CNI installed?)", .0.display())]
    NoConfig(PathBuf),
    #[error("{0}")]
    Blocked(String),
    #[error("{}: files kept changing; try again", .0.display())]
    KeptChanging(PathBuf),
    /// The readiness check's answer: every reason at once.
    #[error("not ready: {0}")]
    NotReady(Unready),
    #[error("{what}: {source}")]
    System {
        what: &'static str,
        source: nix::errno::Errno,
    },
}

/// Installer settings from flags, then environment, then defaults.
#[derive(Debug, Clone)]
pub struct Options {
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// Edit this file instead of the first one (Multus setups).
    pub conf_file: Option<String>,
    /// Whose rule picks the primary file (see `select::Runtime`).
    pub runtime: Runtime,
    pub remove_binary: bool,
}

impl Options {
    fn from_args(
        args: &mut Args,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, InstallError> {
        let pick = |flag: Option<String>, var: &str, default: &str| {
            PathBuf::from(
                flag.or_else(|| env(var).filter(|v| !v.is_empty()))
                    .unwrap_or_else(|| default.to_string()),
            )
        };
        let conf_dir = args.value("--cni-conf-dir")?;
        let bin_dir = args.value("--cni-bin-dir")?;
        let conf_file = args
            .value("--conf-file")?
            .or_else(|| env("CSUM_OFFLOAD_CONF_FILE").filter(|v| !v.is_empty()));
        if let Some(name) = &conf_file {
            if name.contains('/') || !name.ends_with(".conflist") {
                return Err(InstallError::ConfFileName(name.clone()));
            }
        }
        let runtime = args
            .value("--runtime")?
            .or_else(|| env("CSUM_OFFLOAD_RUNTIME"))
            .unwrap_or_default();
        let runtime = Runtime::parse(&runtime).ok_or(InstallError::Runtime(runtime))?;
        Ok(Self {
            conf_dir: pick(conf_dir, "CSUM_OFFLOAD_CNI_CONF_DIR", DEFAULT_CONF_DIR),
            bin_dir: pick(bin_dir, "CSUM_OFFLOAD_CNI_BIN_DIR", DEFAULT_BIN_DIR),
            config: None,
            conf_file,
            runtime,
            remove_binary: args.flag("--remove-binary"),
        })
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn init_logger(args: &mut Args) -> Result<(), InstallError> {
    let level = logger::parse_level(args.value("--log-level")?.as_deref())?;
    logger::init(level, None, "install".into());
    Ok(())
}

/// Reads and validates the entry from the config file (None: defaults).
pub fn load_entry(path: Option<&Path>) -> Result<Entry, InstallError> {
    let Some(path) = path else {
        return Ok(Entry::default_entry());
    };
    let text = config::read_file(path)?;
    Entry::from_config(&text).map_err(|source| InstallError::Entry {
        path: path.to_path_buf(),
        source,
    })
}

pub fn install_command(mut args: Args) -> Result<String, InstallError> {
    let mut opts = Options::from_args(&mut args, env)?;
    opts.config = args
        .value("--config")?
        .or_else(|| env("CSUM_OFFLOAD_CONFIG").filter(|v| !v.is_empty()))
        .map(PathBuf::from);
    let once = args.flag("--once");
    let check = args.flag("--check");
    if once && check {
        return Err(ArgsError::Conflict("--once", "--check").into());
    }
    if check {
        args.finish()?;
        return readiness::check_installed(&opts);
    }
    init_logger(&mut args)?;
    args.finish()?;
    // A bad config never reaches a conflist: validate before anything.
    let entry = load_entry(opts.config.as_deref())?;
    log::info!(
        "csum-offload {} installer: conf dir {}, bin dir {}, entry {}",
        env!("CARGO_PKG_VERSION"),
        opts.conf_dir.display(),
        opts.bin_dir.display(),
        entry.as_value()
    );
    readiness::log_detection(&entry);
    if !once {
        // The DaemonSet's loop: no file system problem ends it (the pod
        // would only crash-loop); it waits, retries and says why.
        return watch::run(&opts, entry);
    }
    std::fs::create_dir_all(&opts.conf_dir).map_err(|source| InstallError::Dir {
        path: opts.conf_dir.clone(),
        source,
    })?;
    commit::remove_stale_temps(&opts.conf_dir);
    commit::remove_stale_temps(&opts.bin_dir);
    copy_binary(&opts.bin_dir)?;
    install_once(&opts, &entry)
}

pub fn uninstall_command(mut args: Args) -> Result<String, InstallError> {
    let opts = Options::from_args(&mut args, env)?;
    init_logger(&mut args)?;
    args.finish()?;
    let mut done = pass::remove_entries(&opts.conf_dir)?;
    handover::release(&opts.conf_dir, None);
    if opts.remove_binary {
        done.push(remove_binary(&opts.conf_dir, &opts.bin_dir)?);
    }
    done.extend(restore_uplink());
    if done.is_empty() {
        done.push(format!(
            "no csum-offload entry in {}; nothing to do",
            opts.conf_dir.display()
        ));
    }
    Ok(done.join("\n"))
}

/// After the entry is gone: the NICs `apply: "uplink"` changed, put back
/// (see `offload::nics`). Without CAP_NET_ADMIN (the DaemonSet's
/// installer) this fails and says who can do it; the DaemonSet's agent
/// container does it when it stops last (`--restore-uplink-on-exit`).
fn restore_uplink() -> Vec<String> {
    let record = Path::new(RECORD_FILE);
    match nics::restore(record) {
        Ok(restored) => {
            if restored.failed > 0 {
                log::warn!(
                    "{} uplink NIC(s) not restored; run `csum-offload agent restore` on the node as root",
                    restored.failed
                );
            }
            restored.lines
        }
        Err(e) => {
            log::warn!("cannot restore the uplink NICs: {e}; run `csum-offload agent restore` on the node as root");
            vec![format!("FAILED restoring the uplink NICs: {e}")]
        }
    }
}

fn copy_binary(bin_dir: &Path) -> Result<(), InstallError> {
    std::fs::create_dir_all(bin_dir).map_err(|source| InstallError::Dir {
        path: bin_dir.to_path_buf(),
        source,
    })?;
    let me = std::env::current_exe().map_err(InstallError::CurrentExe)?;
    match files::install_binary(&me, bin_dir, PLUGIN_TYPE) {
        Ok(true) => log::info!("installed {}", bin_dir.join(PLUGIN_TYPE).display()),
        Ok(false) => log::info!("{} is up to date", bin_dir.join(PLUGIN_TYPE).display()),
        Err(e) => return Err(InstallError::InstallBinary(e)),
    }
    Ok(())
}

/// `--remove-binary`, after the entries are out: the binary goes only if
/// no config the runtime would load still names the plugin (a hand-written
/// entry, a second network, a file written since), because a runtime that
/// runs such a config without the binary fails every ADD and DEL with it.
fn remove_binary(conf_dir: &Path, bin_dir: &Path) -> Result<String, InstallError> {
    let path = bin_dir.join(PLUGIN_TYPE);
    let holders = in_use::holders(conf_dir)?;
    if !holders.is_empty() {
        for h in &holders {
            log::warn!("keeping {}: {h}", path.display());
        }
        let files: Vec<&str> = holders.iter().map(|h| h.file.as_str()).collect();
        return Ok(format!(
            "kept {}: a network config the runtime would load still names {PLUGIN_TYPE} ({})",
            path.display(),
            files.join(", ")
        ));
    }
    // A config written since that look keeps it too (the second look).
    let mut late = Vec::new();
    let removal = files::remove_binary(bin_dir, PLUGIN_TYPE, || {
        late = in_use::holders(conf_dir)?;
        Ok(late.is_empty())
    })?;
    match removal {
        Removal::Removed => Ok(format!("removed {}", path.display())),
        Removal::NotThere => Ok(format!("{} was not there", path.display())),
        Removal::Kept => {
            for h in &late {
                log::warn!("keeping {}: {h}", path.display());
            }
            let files: Vec<&str> = late.iter().map(|h| h.file.as_str()).collect();
            Ok(format!(
                "kept {}: a network config the runtime would load names {PLUGIN_TYPE} since the uninstall began ({})",
                path.display(),
                files.join(", ")
            ))
        }
    }
}

fn install_once(opts: &Options, entry: &Entry) -> Result<String, InstallError> {
    let conf_dir = opts.conf_dir.as_path();
    // A few quick retries cover a file caught mid-write.
    for _ in 0..20 {
        let pass = pass::run(opts, entry, PassMode::Write)?;
        for n in &pass.notes {
            log::warn!("{n}");
        }
        for p in &pass.problems {
            log::warn!("not ready: {p}");
        }
        match pass.outcome {
            PassOutcome::Installed { file, wrote } => {
                let path = conf_dir.join(file);
                return Ok(if wrote {
                    format!("added the csum-offload entry to {}", path.display())
                } else {
                    format!("{} already has the csum-offload entry", path.display())
                });
            }
            PassOutcome::NoConfig => return Err(InstallError::NoConfig(conf_dir.to_path_buf())),
            PassOutcome::Blocked(why) => return Err(InstallError::Blocked(why)),
            // Only a dry run plans without writing.
            PassOutcome::Retry(why) | PassOutcome::WouldWrite { file: why } => {
                log::info!("{why}; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
    Err(InstallError::KeptChanging(conf_dir.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
        let mut args = Args::new(args.iter().map(|s| s.to_string()).collect());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::from_args(&mut args, |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_then_environment_then_defaults() {
        let o = options(&[], &[]).unwrap();
        assert_eq!(o.conf_dir, PathBuf::from(DEFAULT_CONF_DIR));
        assert_eq!(o.bin_dir, PathBuf::from(DEFAULT_BIN_DIR));
        assert!(o.conf_file.is_none() && !o.remove_binary);
        let env = [
            ("CSUM_OFFLOAD_CNI_CONF_DIR", "/env/net.d"),
            ("CSUM_OFFLOAD_CNI_BIN_DIR", ""),
            ("CSUM_OFFLOAD_CONF_FILE", "10-calico.conflist"),
        ];
        let o = options(&[], &env).unwrap();
        assert_eq!(o.conf_dir, PathBuf::from("/env/net.d"));
        assert_eq!(
            o.bin_dir,
            PathBuf::from(DEFAULT_BIN_DIR),
            "empty env is unset"
        );
        assert_eq!(o.conf_file.as_deref(), Some("10-calico.conflist"));
        let o = options(&["--cni-conf-dir", "/flag", "--remove-binary"], &env).unwrap();
        assert_eq!(o.conf_dir, PathBuf::from("/flag"));
        assert!(o.remove_binary);
        for bad in ["10-calico.conf", "../10-x.conflist", "a/b.conflist"] {
            let e = options(&["--conf-file", bad], &[]).unwrap_err();
            assert!(e.contains("must be the name of a .conflist"), "{bad}: {e}");
        }
        assert!(options(&["--cni-conf-dir"], &[])
            .unwrap_err()
            .contains("needs a value"));
    }
}
