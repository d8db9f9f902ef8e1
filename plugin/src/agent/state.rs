//! What the agent changed, so that `agent restore` can put it back: before
//! its first change to an interface, the agent appends that interface's
//! original feature states to a root-only file under /run (one JSON line
//! per end, synced before the change is made).
//!
//! An interface is known by its host end (ifindex, name, peer ifindex): an
//! ifindex is not reused while the interface exists, and records of pairs
//! that are gone are dropped at every full pass.
//!
//! The journal is the only way back, so it must never lie, and never be
//! someone else's file:
//! - its first line is a header naming it and its version; a file whose
//!   first line is neither that header nor a record of the previous
//!   version's format (which had no header) is not a journal, and is
//!   refused and left as it is. A previous version's journal is kept:
//!   rewritten with the header, its records as they were;
//! - a line cut by a crash (no newline at the end) is ended when the
//!   journal is opened, so the next record starts a line of its own; a
//!   line that does not parse is kept verbatim and reported by `restore`
//!   as unreadable, never dropped; a record glued to a cut line by a
//!   previous version (which did not end it) is read back;
//! - the file itself passes `kernel::private`'s checks (regular, not a
//!   link, this uid's, writable by nobody else).

use crate::fsread;
use crate::kernel::ethtool::FeatureState;
use crate::kernel::private::{self, PrivateError};
use crate::offload::pair::{originals, Journal};
use crate::offload::tune::{End, Endpoint, FeaturePlan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_FILE: &str = "/run/csum-offload/agent-state.jsonl";

/// What the header's `journal` field says.
const JOURNAL_NAME: &str = "csum-offload agent journal";

/// The format this code writes (and the only headed one it reads).
pub const JOURNAL_VERSION: u32 = 1;

/// A journal larger than this is not one this agent wrote (a record is
/// about 200 bytes, one per interface end).
const MAX_BYTES: u64 = 64 << 20;

/// The journal's first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    journal: String,
    version: u32,
}

/// The host end that names a pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairId {
    pub host_index: u32,
    pub host: String,
    pub peer_index: u32,
}

/// One end's original states, before the agent's first change to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub pair: PairId,
    /// Which end: written "host" or "container".
    pub end: RecordEnd,
    /// Feature name -> requested state before the change (what `ethtool -K`
    /// had asked for: sending it back puts the kernel where it was).
    pub features: BTreeMap<String, bool>,
}

/// The end a record is for. The journal writes `End::Host` as "host" and
/// `End::Container` as "container"; any other word read from a journal is
/// kept as it is, so that restore reports that record instead of guessing
/// (or dropping it, as an unreadable line would be kept but not counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RecordEnd {
    Pair(End),
    Unknown(String),
}

impl RecordEnd {
    /// The journal's word for an end of a pair (None: a NIC, which the
    /// uplink record holds instead).
    fn word(end: End) -> Option<&'static str> {
        match end {
            End::Host => Some("host"),
            End::Container => Some("container"),
            End::Nic => None,
        }
    }
}

impl From<String> for RecordEnd {
    fn from(word: String) -> Self {
        match word.as_str() {
            "host" => Self::Pair(End::Host),
            "container" => Self::Pair(End::Container),
            _ => Self::Unknown(word),
        }
    }
}

impl From<RecordEnd> for String {
    fn from(end: RecordEnd) -> Self {
        end.to_string()
    }
}

impl std::fmt::Display for RecordEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pair(end) => f.write_str(Self::word(*end).unwrap_or("uplink NIC")),
            Self::Unknown(word) => f.write_str(word),
        }
    }
}

/// A line of the journal that is not a record: cut by a crash, or damaged.
/// Kept verbatim in the file until an operator removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Its line number when the journal was read (1 is the header).
    pub line: usize,
    pub text: String,
}

/// How the file was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Zero bytes: the previous version created its journal empty.
    Empty,
    /// The previous version's: records without a header.
    Previous,
    /// With the header of `JOURNAL_VERSION`.
    Current,
}

/// A journal's content, read.
#[derive(Debug)]
pub struct Loaded {
    pub records: Vec<Record>,
    pub unreadable: Vec<Unreadable>,
    pub format: Format,
    /// The last line has no newline: a write cut by a crash.
    pub torn: bool,
}

/// Why a file is not a journal this agent may use.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    File(#[from] PrivateError),
    #[error(
        "is not a csum-offload agent journal (its first line is neither the \
         journal header nor a record)"
    )]
    NotAJournal,
    #[error("is a journal of version {0}, which this csum-offload (version {JOURNAL_VERSION}) does not read")]
    Version(u32),
}

impl JournalError {
    /// The file is not the agent's own: it is refused and left as it is.
    pub fn is_not_ours(&self) -> bool {
        match self {
            Self::File(e) => e.is_not_ours(),
            Self::NotAJournal | Self::Version(_) => true,
        }
    }
}

impl From<io::Error> for JournalError {
    fn from(e: io::Error) -> Self {
        Self::File(PrivateError::Io(e))
    }
}

impl From<fsread::ReadError> for JournalError {
    fn from(e: fsread::ReadError) -> Self {
        Self::File(e.into())
    }
}

/// Why the state file (or its lock or presence file) could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}{}", path.display(), refusal(source))]
pub struct StateError {
    pub path: PathBuf,
    pub source: JournalError,
}

fn refusal(e: &JournalError) -> &'static str {
    if e.is_not_ours() {
        "; not a file of the agent's, so it is left as it is"
    } else {
        ""
    }
}

impl StateError {
    pub fn new(path: &Path, source: impl Into<JournalError>) -> Self {
        Self {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// A record of a line, with what a cut line before it left (a previous
/// version appended after a torn write without ending it, gluing the two).
fn parse_line(line: &str) -> (Option<Record>, Option<String>) {
    if let Ok(r) = serde_json::from_str(line) {
        return (Some(r), None);
    }
    for (at, _) in line.match_indices('{').filter(|(at, _)| *at > 0) {
        if let Ok(r) = serde_json::from_str(&line[at..]) {
            return (Some(r), Some(line[..at].to_string()));
        }
    }
    (None, Some(line.to_string()))
}

/// Reads a journal's bytes: the header (or the previous format), the
/// records, and every line that is not one.
pub fn parse(bytes: &[u8]) -> Result<Loaded, JournalError> {
    let mut loaded = Loaded {
        records: Vec::new(),
        unreadable: Vec::new(),
        format: Format::Empty,
        torn: !bytes.is_empty() && !bytes.ends_with(b"\n"),
    };
    if bytes.is_empty() {
        return Ok(loaded);
    }
    let text = String::from_utf8_lossy(bytes);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    let first = lines.next().map(|(_, l)| l).unwrap_or_default();
    let mut rest: Vec<(usize, &str)> = Vec::new();
    match serde_json::from_str::<Header>(first) {
        Ok(h) if h.journal == JOURNAL_NAME => {
            if h.version != JOURNAL_VERSION {
                return Err(JournalError::Version(h.version));
            }
            loaded.format = Format::Current;
        }
        _ => {
            // No header: the previous version's journal, if its first line
            // is one of its records; anything else is someone else's file.
            if parse_line(first).0.is_none() {
                return Err(JournalError::NotAJournal);
            }
            loaded.format = Format::Previous;
            rest.push((1, first));
        }
    }
    rest.extend(lines);
    for (number, line) in rest {
        if line.trim().is_empty() {
            continue;
        }
        let (record, left) = parse_line(line);
        if let Some(text) = left {
            loaded.unreadable.push(Unreadable { line: number, text });
        }
        loaded.records.extend(record);
    }
    Ok(loaded)
}

/// Checks, without creating or changing anything, that `path` is absent
/// or a journal of the agent's: run before the lock and presence files
/// are made beside it, so a wrong `--state-file` leaves no trace.
pub fn check(path: &Path) -> Result<(), StateError> {
    let err = |e: JournalError| StateError::new(path, e);
    match private::read_own(path, MAX_BYTES).map_err(|e| err(e.into()))? {
        Some(bytes) => parse(&bytes).map(|_| ()).map_err(err),
        None => Ok(()),
    }
}

/// The journal file, open for appending.
pub struct StateFile {
    path: PathBuf,
    file: File,
    /// What is recorded already, so only the first original is kept.
    records: Vec<Record>,
    /// Lines that are not records, kept in the file as they are.
    unreadable: Vec<Unreadable>,
    /// The pair being tuned now (set by the caller before each pair).
    pub current: Option<PairId>,
}

impl StateFile {
    /// Opens (creating 0600, its directory 0700) the journal and reads
    /// what it holds. A new file, one of the previous format, or one whose
    /// last line was cut, is rewritten at once (with the header, every line
    /// ended), so every append starts a line of its own.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let err = |e: JournalError| StateError::new(path, e);
        let file = private::open_append(path).map_err(|e| err(e.into()))?;
        let bytes = fsread::read_bounded(&file, MAX_BYTES).map_err(|e| err(e.into()))?;
        let loaded = parse(&bytes).map_err(err)?;
        let mut state = Self {
            path: path.to_path_buf(),
            file,
            records: loaded.records,
            unreadable: loaded.unreadable,
            current: None,
        };
        if loaded.format != Format::Current || loaded.torn {
            if loaded.format == Format::Previous {
                log::info!(
                    "{}: a journal of the previous format (no header): rewriting it with the header, its {} records kept",
                    path.display(),
                    state.records.len()
                );
            }
            state.rewrite()?;
        }
        for u in &state.unreadable {
            log::warn!(
                "{}: line {} is not a record (a write cut by a crash, or damage); kept for `agent restore` to report: {}",
                path.display(),
                u.line,
                excerpt(&u.text)
            );
        }
        Ok(state)
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }

    /// Keeps only the records `keep` accepts (pairs that still exist);
    /// rewrites the file when that drops any. Unreadable lines stay.
    pub fn retain(&mut self, keep: impl Fn(&PairId) -> bool) -> Result<usize, StateError> {
        let before = self.records.len();
        self.records.retain(|r| keep(&r.pair));
        let dropped = before - self.records.len();
        if dropped > 0 {
            self.rewrite()?;
        }
        Ok(dropped)
    }

    /// Keeps exactly `records` (what a restore did not put back), and the
    /// unreadable lines.
    pub fn replace(&mut self, records: Vec<Record>) -> Result<(), StateError> {
        self.records = records;
        self.rewrite()
    }

    /// Replaces the file with the header, the records held and the
    /// unreadable lines (temp file, fsync, rename, directory fsync).
    pub fn rewrite(&mut self) -> Result<(), StateError> {
        let err = |e: JournalError| StateError::new(&self.path, e);
        let mut text = header_line();
        text.extend(self.records.iter().map(line));
        for u in &self.unreadable {
            text.push_str(&u.text);
            text.push('\n');
        }
        private::replace(&self.path, text.as_bytes()).map_err(|e| err(e.into()))?;
        self.file = private::open_append(&self.path).map_err(|e| err(e.into()))?;
        Ok(())
    }

    fn append(&mut self, record: Record) -> io::Result<()> {
        self.file.write_all(line(&record).as_bytes())?;
        self.file.sync_data()?;
        self.records.push(record);
        Ok(())
    }
}

/// At most 80 characters of a line, for messages.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{:?}...", &text[..at]),
        None => format!("{text:?}"),
    }
}

fn header_line() -> String {
    let header = Header {
        journal: JOURNAL_NAME.into(),
        version: JOURNAL_VERSION,
    };
    let mut s = serde_json::to_string(&header).unwrap_or_default();
    s.push('\n');
    s
}

fn line(r: &Record) -> String {
    let mut s = serde_json::to_string(r).unwrap_or_default();
    s.push('\n');
    s
}

impl Journal for StateFile {
    fn before_change(
        &mut self,
        target: Endpoint<'_>,
        plan: &FeaturePlan,
        before: &FeatureState,
        changes: &[(usize, bool)],
    ) -> io::Result<()> {
        let Some(pair) = self.current.clone() else {
            return Ok(());
        };
        // NICs are in the uplink record (offload::nic_record).
        if RecordEnd::word(target.end).is_none() {
            return Ok(());
        }
        let end = RecordEnd::Pair(target.end);
        let known: Vec<&String> = self
            .records
            .iter()
            .filter(|r| r.pair == pair && r.end == end)
            .flat_map(|r| r.features.keys())
            .collect();
        let features = originals(plan, before, changes, |n| known.iter().any(|k| *k == n));
        if features.is_empty() {
            return Ok(());
        }
        self.append(Record {
            pair,
            end,
            features,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(index: u32) -> Record {
        Record {
            pair: PairId {
                host_index: index,
                host: format!("veth{index}"),
                peer_index: 2,
            },
            end: RecordEnd::Pair(End::Host),
            features: [("tx-checksum-ip-generic".to_string(), true)].into(),
        }
    }

    #[test]
    fn an_end_is_typed_and_a_word_it_does_not_know_is_kept_as_read() {
        for (word, end) in [
            ("host", RecordEnd::Pair(End::Host)),
            ("container", RecordEnd::Pair(End::Container)),
            ("nic", RecordEnd::Unknown("nic".into())),
        ] {
            let line = format!(
                r#"{{"host_index":3,"host":"veth3","peer_index":2,"end":"{word}","features":{{"tx-checksum-ip-generic":true}}}}"#
            );
            let r: Record = serde_json::from_str(&line).unwrap();
            assert_eq!(r.end, end, "{word}");
            assert_eq!(serde_json::to_string(&r).unwrap(), line, "{word}");
        }
    }

    #[test]
    fn a_cut_line_is_ended_kept_and_never_swallows_the_next_record() {
        let dir = crate::unit_dirs::fresh("state", "torn");
        let path = dir.join("sub/state.jsonl");
        let mut state = StateFile::open(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), header_line());
        state.append(record(7)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"host_index\": 9, \"hos")
            .unwrap();
        let mut again = StateFile::open(&path).unwrap();
        again.append(record(8)).unwrap();
        let loaded = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(loaded.records, vec![record(7), record(8)]);
        assert_eq!(loaded.unreadable.len(), 1, "{loaded:?}");
        assert_eq!(loaded.unreadable[0].text, "{\"host_index\": 9, \"hos");
        assert!(!loaded.torn);
        assert_eq!(again.retain(|p| p.host_index != 7).unwrap(), 1);
        let loaded = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(loaded.records, vec![record(8)]);
        assert_eq!(loaded.unreadable.len(), 1, "pruning keeps unreadable lines");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_previous_format_is_read_and_upgraded_and_others_refused() {
        // As the previous version wrote it, cut line glued to the next.
        let old = format!(
            "{}{{\"host_index\": 9, \"hos{}",
            line(&record(7)),
            line(&record(8))
        );
        let loaded = parse(old.as_bytes()).unwrap();
        assert_eq!(loaded.format, Format::Previous);
        assert_eq!(loaded.records, vec![record(7), record(8)]);
        assert_eq!(loaded.unreadable[0].line, 2);
        let dir = crate::unit_dirs::fresh("state", "upgrade");
        let path = dir.join("state.jsonl");
        std::fs::write(&path, &old).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        check(&path).unwrap();
        let state = StateFile::open(&path).unwrap();
        assert_eq!(state.records().len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&header_line()), "{text}");
        assert_eq!(parse(text.as_bytes()).unwrap().format, Format::Current);
        for foreign in [
            "root:x:0:0:root:/root:/bin/bash\n",
            "{\"cniVersion\": \"1.0.0\"}\n",
            "{\"journal\": \"csum-offload agent journal\", \"version\": 2}\n",
        ] {
            std::fs::write(&path, foreign).unwrap();
            let e = StateFile::open(&path).err().unwrap();
            assert!(e.source.is_not_ours(), "{e}");
            check(&path).unwrap_err();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
