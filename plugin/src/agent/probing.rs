//! `detection` "probe" or "both": the agent probes (at start, every
//! `probe.interval`, when the uplink changes), writes the verdict where
//! every `decide` reads it (the plugin's ADD included), logs the figures
//! of each try and sets the probe's metrics. What the verdict does to the
//! decision is the core's (`offload::decision`); this file only runs the
//! probe and keeps its record.

use super::metrics::ProbeMetrics;
use super::reconcile::Agent;
use crate::offload::probe::evidence::{self, EvidenceError, VerdictRecord};
use crate::offload::probe::run::{
    probe, Options, DEFAULT_BYTES, DEFAULT_TIMEOUT_MS, DEFAULT_TRIES,
};
use crate::offload::probe::ProbeError;
use crate::offload::wanted::{Detection, ProbePath, ProbeSpec};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why the agent has no new verdict.
#[derive(Debug, thiserror::Error)]
pub enum ProbeRunError {
    #[error("the probe did not run: {0}")]
    Probe(#[from] ProbeError),
    #[error("cannot keep the verdict: {0}")]
    Write(#[from] EvidenceError),
}

/// The probe's own record and lock (a throwaway pod's probe takes only
/// the lock): `probe-state.json` beside the verdict file, so with the
/// default `verdictFile` it is `csum-offload probe`'s default too, and an
/// operator's probe and the agent's take turns.
fn probe_state_file(spec: &ProbeSpec) -> PathBuf {
    spec.verdict_file.with_file_name("probe-state.json")
}

/// One probe from a throwaway pod on this node's `path`; its record,
/// kept in `spec.verdict_file` unless `keep` is false (a dry run).
fn probe_once(
    agent: &Agent,
    spec: &ProbeSpec,
    path: ProbePath,
    keep: bool,
) -> Result<VerdictRecord, ProbeRunError> {
    let options = Options {
        target: SocketAddr::V4(path.target),
        netns: None,
        ifname: "eth0".into(),
        source: Some(path.source),
        bytes: DEFAULT_BYTES,
        tries: DEFAULT_TRIES,
        deadline: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        state_file: probe_state_file(spec),
    };
    let report = probe(&options, &agent.config)?;
    let record = VerdictRecord {
        verdict: report.verdict,
        at: evidence::now(),
        target: report.target,
        source: Some(path.source.to_string()),
        node: agent.config.node_name.clone(),
        path: report.path,
        attempts: report.attempts,
        millis: report.millis,
    };
    if keep {
        evidence::write(&spec.verdict_file, &record)?;
    }
    Ok(record)
}

/// The lines that give a verdict's evidence: the verdict, then each
/// transfer's figures.
pub fn evidence_lines(r: &VerdictRecord) -> Vec<String> {
    let mut lines = vec![format!(
        "probe {} from {}: {} ({} ms)",
        r.target, r.path, r.verdict, r.millis
    )];
    for a in &r.attempts {
        lines.push(format!(
            "probe try {} offload {}: {}/{} bytes acknowledged in {} ms{}",
            a.try_number,
            a.mode,
            a.bytes_acked,
            a.bytes,
            a.millis,
            a.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    lines
}

/// Probes, keeps the verdict, decides again and says what the verdict
/// did (the fallback to no change, a disagreement with the table);
/// returns the lines for `--once` and whether what pods get changed.
/// Nothing under `detection` "table". A dry run does not probe (it would
/// replace the verdict ADD reads): the verdict on file decides.
pub fn run(agent: &mut Agent) -> (Vec<String>, bool) {
    let Some(spec) = agent.config.probe.clone() else {
        return (Vec::new(), false);
    };
    if agent.config.detection == Detection::Table {
        return (Vec::new(), false);
    }
    let mut out = Vec::new();
    let path = spec.path_for(agent.config.node_name.as_deref());
    if let Err(why) = &path {
        // Not a fault to repeat at every interval: a node left out of
        // `probe.nodes` on purpose stays as it is. Said once, at warn,
        // and again only when the reason changes.
        let line = format!("not probing: {why}; changing nothing on this node");
        if agent.no_probe_path.as_ref() != Some(why) {
            log::warn!("{line}");
            agent.no_probe_path = Some(why.clone());
        }
        out.push(line);
    } else {
        agent.no_probe_path = None;
    }
    if agent.dry_run {
        out.push("dry run: not probing; the verdict on file decides".to_string());
    } else if let Ok(path) = path {
        let ran = probe_once(agent, &spec, path, true);
        if let Ok(mut m) = agent.metrics.lock() {
            let p = m.probe.get_or_insert_with(ProbeMetrics::default);
            p.runs_total += 1;
            if ran.is_err() {
                p.errors_total += 1;
            }
        }
        match ran {
            Ok(record) => {
                for line in evidence_lines(&record) {
                    log::info!("{line}");
                    out.push(line);
                }
            }
            Err(e) => {
                let line = format!("{e}; the verdict on file stands until it is stale");
                log::warn!("{line}");
                out.push(line);
            }
        }
    }
    let changed = agent.redecide();
    if let Ok(d) = agent.decision() {
        if let Some(p) = &d.probe {
            if p.fallback && agent.no_probe_path.is_none() {
                let line = format!(
                    "probe verdict {}: changing nothing (detection \"probe\" acts only on broken)",
                    p.status
                );
                log::warn!("{line}");
                out.push(line);
            }
            if let Some(why) = &p.disagreement {
                let line = format!("probe disagrees with the table: {why}");
                log::warn!("{line}");
                out.push(line);
            }
        }
    }
    (out, changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::probe::toggle::STATE_FILE;

    #[test]
    fn the_default_lock_is_the_probe_command_s() {
        let spec = ProbeSpec {
            target: Some("10.0.0.1:80".parse().unwrap()),
            source: Some("10.244.0.9".parse().unwrap()),
            nodes: Default::default(),
            interval: Duration::from_secs(300),
            verdict_file: evidence::VERDICT_FILE.into(),
        };
        assert_eq!(probe_state_file(&spec), PathBuf::from(STATE_FILE));
    }
}
