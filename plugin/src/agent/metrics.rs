//! The agent's numbers, in the Prometheus text format: served on an
//! opt-in HTTP endpoint, and written to a textfile for node_exporter's
//! textfile collector. Names follow the Prometheus conventions (a
//! `csum_offload_` prefix, `_total` counters, units in the name).
//!
//! - `endpoint`: the HTTP server (`--metrics-address`).
//! - `textfile`: the file for node_exporter (`--textfile`).

mod endpoint;
mod textfile;

pub use endpoint::serve;
pub use textfile::write_textfile;

use crate::offload::probe::Verdict;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One NIC the decision rests on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkInfo {
    pub nic: String,
    pub driver: String,
    pub driver_version: String,
    pub firmware_version: String,
    pub settings: String,
}

/// The probe's part (`detection` "probe" or "both").
#[derive(Debug, Clone, Default)]
pub struct ProbeMetrics {
    /// The fresh verdict that counts; None: no usable one.
    pub verdict: Option<Verdict>,
    /// When the verdict on file was taken (Unix seconds), 0 when none.
    pub at: u64,
    pub fallback: bool,
    pub disagreement: bool,
    pub runs_total: u64,
    pub errors_total: u64,
}

/// What the agent has seen and done since it started.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub uplinks: Vec<UplinkInfo>,
    /// The settings pods' veths get on this node ("(no change)" when none).
    pub settings: String,
    pub detection_ok: bool,
    /// Container veth pairs in scope at the last full pass.
    pub pairs: u64,
    /// Of those, the pairs that ended the pass with the policy's settings
    /// (fixed then, earlier, or already so): the pairs fixed per node.
    pub pairs_conforming: u64,
    pub checks_total: u64,
    pub changed_total: u64,
    pub failed_total: u64,
    pub drift_repaired_total: u64,
    pub full_passes_total: u64,
    pub last_reconcile_seconds: f64,
    /// None under `detection` "table": no probe metrics are exported.
    pub probe: Option<ProbeMetrics>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let uplinks: Vec<(String, String)> = self
            .uplinks
            .iter()
            .map(|u| {
                (
                    format!(
                        "{{nic=\"{}\",driver=\"{}\",driver_version=\"{}\",firmware_version=\"{}\",settings=\"{}\"}}",
                        escape(&u.nic),
                        escape(&u.driver),
                        escape(&u.driver_version),
                        escape(&u.firmware_version),
                        escape(&u.settings)
                    ),
                    "1".to_string(),
                )
            })
            .collect();
        metric(
            "csum_offload_uplink_info",
            "gauge",
            "A host NIC the decision rests on: its driver, driver and firmware version, and the settings it gets (the first rule that matches it, else its driver table entry, else default).",
            &uplinks,
        );
        metric(
            "csum_offload_decision_info",
            "gauge",
            "The settings this node's container veths get.",
            &[(
                format!("{{settings=\"{}\"}}", escape(&self.settings)),
                "1".into(),
            )],
        );
        let one = |v: u64| vec![(String::new(), v.to_string())];
        metric(
            "csum_offload_detection_ok",
            "gauge",
            "1 when the host NIC was detected, 0 when not (then nothing is changed).",
            &one(u64::from(self.detection_ok)),
        );
        metric(
            "csum_offload_pairs",
            "gauge",
            "Container veth pairs in scope at the last full pass.",
            &one(self.pairs),
        );
        metric(
            "csum_offload_pairs_conforming",
            "gauge",
            "Of the pairs in scope at the last full pass, those that ended it with the policy's settings: fixed by the agent or the plugin, or already so (all of them when the policy changes nothing).",
            &one(self.pairs_conforming),
        );
        metric(
            "csum_offload_pair_checks_total",
            "counter",
            "Container veth pairs checked against the policy.",
            &one(self.checks_total),
        );
        metric(
            "csum_offload_interfaces_changed_total",
            "counter",
            "Interface ends whose features the agent changed.",
            &one(self.changed_total),
        );
        metric(
            "csum_offload_failures_total",
            "counter",
            "Pair checks that ended with a feature not as the policy wants, or an error.",
            &one(self.failed_total),
        );
        metric(
            "csum_offload_drift_repaired_total",
            "counter",
            "Ends found conforming earlier and changed back later.",
            &one(self.drift_repaired_total),
        );
        metric(
            "csum_offload_full_passes_total",
            "counter",
            "Full passes over every container veth pair.",
            &one(self.full_passes_total),
        );
        metric(
            "csum_offload_last_reconcile_timestamp_seconds",
            "gauge",
            "When the last pair check ended (Unix time).",
            &[(String::new(), format!("{:.3}", self.last_reconcile_seconds))],
        );
        if let Some(p) = &self.probe {
            let shown = p.verdict.map(|v| v.to_string());
            let verdicts: Vec<(String, String)> =
                ["ok", "broken", "unreachable", "inconclusive", "none"]
                    .iter()
                    .map(|v| {
                        let now = shown.as_deref().unwrap_or("none") == *v;
                        (format!("{{verdict=\"{v}\"}}"), u64::from(now).to_string())
                    })
                    .collect();
            metric(
                "csum_offload_probe_verdict",
                "gauge",
                "The probe's verdict that counts (1 on its label): ok, broken, unreachable, inconclusive, or none (missing, stale, for another target).",
                &verdicts,
            );
            metric(
                "csum_offload_probe_timestamp_seconds",
                "gauge",
                "When the verdict on file was taken (Unix time), 0 when there is none.",
                &one(p.at),
            );
            metric(
                "csum_offload_probe_fallback",
                "gauge",
                "1 when detection \"probe\" changes nothing because the verdict is not broken or ok (unreachable, inconclusive, none).",
                &one(u64::from(p.fallback)),
            );
            metric(
                "csum_offload_probe_disagreement",
                "gauge",
                "1 when, under detection \"both\", the table and the probe disagree (a NIC the table fixes on a healthy path, or a broken path the table leaves alone).",
                &one(u64::from(p.disagreement)),
            );
            metric(
                "csum_offload_probes_total",
                "counter",
                "Probes the agent ran.",
                &one(p.runs_total),
            );
            metric(
                "csum_offload_probe_errors_total",
                "counter",
                "Probes that did not run to a verdict (setup failed), or whose verdict could not be kept.",
                &one(p.errors_total),
            );
        }
        out
    }

    pub fn touch(&mut self) {
        self.last_reconcile_seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let m = Metrics {
            uplinks: vec![UplinkInfo {
                nic: "enp1s0".into(),
                driver: "txgbe".into(),
                settings: "tx \"off\"".into(),
                ..Default::default()
            }],
            changed_total: 3,
            pairs: 4,
            pairs_conforming: 3,
            ..Default::default()
        };
        let text = m.render();
        assert!(text.contains(
            "csum_offload_uplink_info{nic=\"enp1s0\",driver=\"txgbe\",driver_version=\"\",firmware_version=\"\",settings=\"tx \\\"off\\\"\"} 1"
        ));
        assert!(text.contains("# TYPE csum_offload_interfaces_changed_total counter\ncsum_offload_interfaces_changed_total 3\n"));
        assert!(text.contains("csum_offload_pairs 4\n"));
        assert!(text.contains(
            "# TYPE csum_offload_pairs_conforming gauge\ncsum_offload_pairs_conforming 3\n"
        ));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("csum_offload_"), "{line}");
        }
        assert!(!text.contains("probe"), "no probe metrics under the table");
    }

    #[test]
    fn probe_metrics() {
        let m = Metrics {
            probe: Some(ProbeMetrics {
                verdict: Some(Verdict::Unreachable),
                at: 1_700_000_000,
                fallback: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = m.render();
        for want in [
            "csum_offload_probe_verdict{verdict=\"unreachable\"} 1\n",
            "csum_offload_probe_verdict{verdict=\"broken\"} 0\n",
            "csum_offload_probe_verdict{verdict=\"none\"} 0\n",
            "csum_offload_probe_timestamp_seconds 1700000000\n",
            "csum_offload_probe_fallback 1\n",
            "csum_offload_probe_disagreement 0\n",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        let none = Metrics {
            probe: Some(ProbeMetrics::default()),
            ..Default::default()
        }
        .render();
        assert!(none.contains("csum_offload_probe_verdict{verdict=\"none\"} 1\n"));
    }
}
