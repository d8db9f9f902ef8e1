//! One active installer per node, and a clean handover during upgrades.
//!
//! The DaemonSet rolls with `maxSurge: 1, maxUnavailable: 0`: the new pod
//! starts while the old one still runs. The newest installer claims the
//! node by writing its token into the conf dir; an older one that sees a
//! token not its own stops editing (no fight over two configs) and, on
//! SIGTERM, leaves the entry to its successor instead of removing it. So
//! an upgrade never leaves the node without the entry, and deleting the
//! DaemonSet still removes it: the active installer does that.
//!
//! A new installer whose config is invalid exits before it claims, so a
//! bad rollout leaves the old installer in charge.

use super::commit::write_atomic;
use super::files::FsError;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// In the conf dir; not a name any runtime loads.
pub const TOKEN_FILE: &str = ".csum-offload.active";

/// A token unique to this installer process: pid namespaces repeat pids,
/// so the start time and random bytes are part of it.
pub fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut random = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("pid {} started {nanos} id {hex}", std::process::id())
}

/// Makes `token` the active installer of this node.
pub fn claim(conf_dir: &Path, token: &str) -> Result<(), FsError> {
    write_atomic(conf_dir, TOKEN_FILE, format!("{token}\n").as_bytes(), 0o644)
}

/// The active installer's token, if any.
pub fn holder(conf_dir: &Path) -> Option<String> {
    crate::fsread::read_regular(&conf_dir.join(TOKEN_FILE), 4096)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Removes the token if it is still `token` (None: whatever it is).
pub fn release(conf_dir: &Path, token: Option<&str>) {
    if token.is_none() || holder(conf_dir).as_deref() == token {
        let _ = std::fs::remove_file(conf_dir.join(TOKEN_FILE));
    }
}

/// What a pass should do, given this installer's state and the token on
/// disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ours: edit.
    Active,
    /// The token vanished while we were active (an uninstall by hand, the
    /// directory recreated): claim again, then edit.
    Reclaim,
    /// A newer installer took over: stop editing, for good.
    HandedOver,
    /// Already handed over.
    Standby,
}

pub fn role(was_active: bool, mine: &str, on_disk: Option<&str>) -> Role {
    match (was_active, on_disk) {
        (false, _) => Role::Standby,
        (true, Some(t)) if t == mine => Role::Active,
        (true, None) => Role::Reclaim,
        (true, Some(_)) => Role::HandedOver,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        let cases = [
            (true, Some("a"), Role::Active),
            (true, None, Role::Reclaim),
            (true, Some("b"), Role::HandedOver),
            (false, Some("a"), Role::Standby),
            (false, None, Role::Standby),
            (false, Some("b"), Role::Standby),
        ];
        for (was_active, on_disk, want) in cases {
            assert_eq!(
                role(was_active, "a", on_disk),
                want,
                "{was_active} {on_disk:?}"
            );
        }
    }

    #[test]
    fn tokens_differ_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("csum-offload-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(holder(&dir), None);
        claim(&dir, &a).unwrap();
        assert_eq!(holder(&dir).as_deref(), Some(a.as_str()));
        release(&dir, Some(&b));
        assert_eq!(
            holder(&dir).as_deref(),
            Some(a.as_str()),
            "not b's to release"
        );
        release(&dir, Some(&a));
        assert_eq!(holder(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
