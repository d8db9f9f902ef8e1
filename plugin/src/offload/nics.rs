//! The uplink placement: the settings on the node's NIC(s) themselves (the
//! leaves detection found under a bond, vlan, bridge or macvlan) instead
//! of on any pod's veth. Only packets that leave through such a NIC are
//! then checksummed in software, at the NIC; traffic between pods on the
//! node keeps its offload (docs/performance.md has the figures).
//!
//! A NIC is node-wide state: every caller (the plugin at each ADD, the
//! agent) sets it idempotently, the states it had are recorded before the
//! first change (`nic_record`), and `restore` puts them back. Every NIC is
//! read before any is changed, and the common case, a NIC already set,
//! takes neither the record's lock nor a write.

use super::decision::Decision;
use super::nic_record::{NicRecords, RecordError};
use super::pair::{EndOutcome, Journal, Mode, Problems};
use super::tune::{self, End, Endpoint, FeaturePlan};
use super::KernelError;
use crate::kernel::netlink::RouteSocket;
use std::io;
use std::path::Path;

/// What tuning the uplink did, per NIC, and every problem.
#[derive(Debug, Default)]
pub struct NicOutcome {
    pub nics: Vec<EndOutcome>,
    pub problems: Problems,
}

/// Why the NICs could not be tuned (problems with the features themselves
/// come back in `NicOutcome::problems`).
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The record of the NICs' original states could not be kept, so
    /// nothing was changed.
    #[error("the record of the uplink NIC's original state, {0}")]
    Record(#[from] RecordError),
}

/// Sets (or verifies) each NIC of `decision` whose policy asks for
/// something to its own settings, in the netns the process runs in.
pub fn conform(decision: &Decision, mode: Mode, record: &Path) -> Result<NicOutcome, NicError> {
    let nics: Vec<_> = decision.nics_to_set().collect();
    if nics.is_empty() {
        return Ok(NicOutcome::default());
    }
    let mut socket = RouteSocket::open().map_err(|e| KernelError::new("netlink socket", e))?;
    let mut plans = Vec::with_capacity(nics.len());
    for nic in &nics {
        let target = endpoint(&socket, &nic.name);
        let kernel = |e| KernelError::new(&target.to_string(), e);
        let plan = FeaturePlan::read(&nic.wanted, target).map_err(kernel)?;
        let state = plan.state(target).map_err(kernel)?;
        plans.push((plan, state));
    }
    let stale = plans
        .iter()
        .any(|(plan, state)| !plan.changes(state).is_empty());
    // Locked only when something is to change; then every NIC is read
    // again, since another ADD may have set it meanwhile.
    let mut records = match (mode, stale) {
        (Mode::Set, true) => Some(NicRecords::lock(record)?),
        _ => None,
    };
    let mut outcome = NicOutcome::default();
    for (nic, (plan, state)) in nics.iter().zip(plans) {
        let kernel = |e| KernelError::new(&format!("{} {}", End::Nic, nic.name), e);
        let report = match &mut records {
            None if mode == Mode::Verify => plan.verify(&state),
            None => plan
                .apply(endpoint(&socket, &nic.name), state, &[])
                .map_err(kernel)?,
            Some(records) => {
                let state = plan.state(endpoint(&socket, &nic.name)).map_err(kernel)?;
                let changes = plan.changes(&state);
                if !changes.is_empty() {
                    // Recorded by ifindex: a NIC re-created since is another.
                    records.current = Some(index_of(&mut socket, &nic.name).map_err(kernel)?);
                    records
                        .before_change(endpoint(&socket, &nic.name), &plan, &state, &changes)
                        .map_err(|e| {
                            KernelError::new(
                                &format!("{} {}: recording its state", End::Nic, nic.name),
                                e,
                            )
                        })?;
                }
                plan.apply(endpoint(&socket, &nic.name), state, &changes)
                    .map_err(kernel)?
            }
        };
        outcome.problems.add_report(End::Nic, &nic.name, &report);
        outcome.nics.push(EndOutcome {
            end: End::Nic,
            ifname: nic.name.clone(),
            report,
        });
    }
    Ok(outcome)
}

fn endpoint<'s>(socket: &'s RouteSocket, name: &'s str) -> Endpoint<'s> {
    Endpoint {
        end: End::Nic,
        ifname: name,
        fd: socket.fd(),
    }
}

fn index_of(socket: &mut RouteSocket, name: &str) -> io::Result<u32> {
    socket
        .link_by_name(name)?
        .map(|l| l.index)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
}

/// What a restore did: one line per recorded NIC, and how many NICs were
/// put back, were gone, or failed.
#[derive(Debug, Default)]
pub struct Restored {
    pub lines: Vec<String>,
    pub restored: usize,
    pub gone: usize,
    pub failed: usize,
}

/// Puts every NIC of this netns recorded at `record` back in the state it
/// had before the first change, and forgets what it put back. A NIC gone
/// or re-created since (another ifindex) has its driver's defaults again:
/// nothing to do, and its record is dropped.
pub fn restore(record: &Path) -> Result<Restored, RecordError> {
    let mut restored = Restored::default();
    if !record.exists() {
        return Ok(restored);
    }
    let mut records = NicRecords::lock(record)?;
    let mut socket = RouteSocket::open().map_err(|source| RecordError {
        path: record.to_path_buf(),
        source,
    })?;
    let mut done = Vec::new();
    for r in records.here() {
        let label = format!("uplink NIC {}", r.name);
        match socket.link_by_index(r.index) {
            Ok(Some(link)) if link.name == r.name => {
                match tune::restore_requested(socket.fd(), &r.name, &r.features) {
                    Ok(()) => {
                        restored.restored += 1;
                        restored.lines.push(format!(
                            "{label}: restored [{}]",
                            super::features::describe_states(&r.features)
                        ));
                        done.push((r.index, r.name.clone()));
                    }
                    Err(e) => {
                        restored.failed += 1;
                        restored.lines.push(format!("FAILED {label}: {e}"));
                    }
                }
            }
            Ok(_) => {
                restored.gone += 1;
                restored.lines.push(format!(
                    "{label}: gone or re-created since (its driver's defaults are back); nothing to restore"
                ));
                done.push((r.index, r.name.clone()));
            }
            Err(e) => {
                restored.failed += 1;
                restored.lines.push(format!("FAILED {label}: {e}"));
            }
        }
    }
    records.forget(&done)?;
    Ok(restored)
}
