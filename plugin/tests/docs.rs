//! The docs against the code, where a machine can tell: every config key,
//! error code, operator command and make target the docs name exists, and
//! every one the code has is documented. A page that drifts from the code
//! fails here instead of misleading an operator.

mod common;

use common::{run, BIN};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(page: &str) -> String {
    std::fs::read_to_string(repo().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"))
}

/// Every page an operator or contributor reads.
fn pages() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string(), "CONTRIBUTING.md".to_string()];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            names.push(format!("docs/{name}"));
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|n| (read(&n), n))
        .map(|(t, n)| (n, t))
        .collect()
}

/// The first cell of each row of the first table after `heading`, with
/// backticks removed.
fn first_column(text: &str, heading: &str) -> Vec<String> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .filter_map(|l| l.split('|').nth(1))
        .map(|c| c.trim().trim_matches('`').to_string())
        .collect()
}

fn set<T: Ord + Clone>(items: &[T]) -> BTreeSet<T> {
    items.iter().cloned().collect()
}

#[test]
fn every_config_field_is_documented_and_every_documented_field_exists() {
    let code = set(csum_offload::config::OWN_KEYS);
    let code: BTreeSet<String> = code.into_iter().map(String::from).collect();
    let reference = first_column(&read("docs/configuration.md"), "\n## Fields");
    assert_eq!(set(&reference), code, "docs/configuration.md, ## Fields");
    let readme = first_column(&read("README.md"), "\n## Configuration");
    let readme: BTreeSet<String> = readme
        .iter()
        .flat_map(|c| c.split(" / ").map(|k| k.trim_matches('`').to_string()))
        .collect();
    assert_eq!(readme, code, "README.md, ## Configuration");
    // The unknown-field message lists the same keys.
    let conf = serde_json::json!({"cniVersion": "1.0.0", "hostInterfce": "x"});
    let r = common::exec(&[("CNI_COMMAND", "VERSION")], b"{}");
    r.expect_ok();
    let msg = csum_offload::cni::NetConf::parse(conf.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    for key in &code {
        assert!(msg.contains(key.as_str()), "{msg}");
    }
}

#[test]
fn every_error_code_is_documented_and_every_documented_code_exists() {
    let code: BTreeSet<String> = csum_offload::cni::error::CODES
        .iter()
        .map(u32::to_string)
        .collect();
    for (page, heading) in [
        ("docs/configuration.md", "\n## Error codes"),
        ("docs/troubleshooting.md", "\n## Plugin error codes"),
    ] {
        let documented = first_column(&read(page), heading);
        assert_eq!(set(&documented), code, "{page}, {heading:?}");
    }
}

/// The subcommands `--help` lists.
fn commands() -> BTreeSet<String> {
    run(BIN, &["--help"])
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("csum-offload "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|w| !w.starts_with('-'))
        .map(String::from)
        .collect()
}

/// A line of a page: a code fence's opening or closing line, a line inside
/// a fenced block, or a line of prose.
enum DocLine<'a> {
    Fence,
    Code(&'a str),
    Prose(&'a str),
}

/// The lines of `text`, each told apart by the ``` fences around it.
fn doc_lines(text: &str) -> Vec<DocLine<'_>> {
    let mut fenced = false;
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                DocLine::Fence
            } else if fenced {
                DocLine::Code(line)
            } else {
                DocLine::Prose(line)
            }
        })
        .collect()
}

/// The words after `csum-offload` in code: command lines in fenced blocks
/// (after a `#` or `$` prompt, or none) and inline code spans.
fn commands_in(text: &str) -> Vec<String> {
    let word = |rest: &str| -> Option<String> {
        let w: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        (!w.is_empty() && !w.starts_with('-')).then_some(w)
    };
    let mut found = Vec::new();
    for line in doc_lines(text) {
        match line {
            DocLine::Fence => {}
            DocLine::Code(line) => {
                let l = line.trim_start();
                let l = l
                    .strip_prefix("# ")
                    .or_else(|| l.strip_prefix("$ "))
                    .unwrap_or(l);
                if let Some(rest) = l.strip_prefix("csum-offload ") {
                    found.extend(word(rest));
                }
            }
            DocLine::Prose(line) => {
                for (i, _) in line.match_indices("`csum-offload ") {
                    found.extend(word(&line[i + "`csum-offload ".len()..]));
                }
            }
        }
    }
    found
}

#[test]
fn every_command_named_in_the_docs_exists_and_every_command_is_documented() {
    let commands = commands();
    assert!(commands.contains("detect") && commands.contains("install"));
    let mut named = BTreeSet::new();
    for (page, text) in pages() {
        for word in commands_in(&text) {
            named.insert((word, page.clone()));
        }
    }
    let unknown: Vec<_> = named
        .iter()
        .filter(|(w, _)| !commands.contains(w))
        .collect();
    assert!(
        unknown.is_empty(),
        "commands the docs name that do not exist: {unknown:?}"
    );
    let documented: BTreeSet<&String> = named.iter().map(|(w, _)| w).collect();
    for command in &commands {
        assert!(
            documented.contains(command),
            "`csum-offload {command}` is in no page"
        );
    }
    // Each has its own --help.
    for command in &commands {
        let help = run(BIN, &[command, "--help"]);
        assert!(
            help.starts_with(&format!("csum-offload {command}")),
            "{command}: {help}"
        );
    }
}

#[test]
fn every_make_target_named_in_the_docs_exists() {
    let makefile = read("Makefile");
    let targets: BTreeSet<String> = makefile
        .lines()
        .filter_map(|l| l.split_once(':').map(|(t, _)| t))
        .filter(|t| !t.is_empty() && !t.starts_with(['\t', '#', '.', ' ']) && !t.contains('='))
        .flat_map(|t| t.split_whitespace().map(String::from))
        .collect();
    for (page, text) in pages() {
        for (i, _) in text.match_indices("make ") {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue; // "remake", "cmake"
            }
            let word: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            let quoted = text[..i].ends_with('`');
            if quoted && !word.is_empty() {
                assert!(
                    targets.contains(&word),
                    "{page}: `make {word}` is not a Makefile target"
                );
            }
        }
    }
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_`
/// dropped, spaces to `-`; a repeated heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for line in doc_lines(text) {
        let DocLine::Prose(line) = line else { continue };
        if !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while seen.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        seen.insert(unique);
    }
    seen
}

/// Every `[text](target)` outside code fences whose target is in this
/// repository.
fn local_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    for line in doc_lines(text) {
        let DocLine::Prose(line) = line else { continue };
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") && !target.contains(' ') {
                links.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    links
}

#[test]
fn every_link_between_pages_and_to_a_heading_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for (name, text) in pages() {
        let dir = Path::new(&name).parent().unwrap().to_path_buf();
        for link in local_links(&text) {
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                PathBuf::from(&name)
            } else {
                dir.join(path)
            };
            let full = repo().join(&target);
            checked += 1;
            if !full.exists() {
                broken.push(format!("{name}: {link}: no {}", target.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                if full.extension().is_some_and(|e| e == "md") {
                    let headings = anchors(&std::fs::read_to_string(&full).unwrap());
                    if !headings.contains(anchor) {
                        broken.push(format!("{name}: {link}: no heading #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} links found: is the scan reading the pages?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_sees_a_broken_anchor() {
    // The negative control of the test above.
    let text = "# A title, with: punctuation\n## Twice\n## Twice\n```\n# not a heading\n```\n";
    let a = anchors(text);
    assert!(a.contains("a-title-with-punctuation") && a.contains("twice") && a.contains("twice-1"));
    assert!(!a.contains("not-a-heading"));
    assert_eq!(
        local_links("see [x](a.md#b) and [y](https://e.org) `[z](c.md)`\n```\n[w](d.md)\n```"),
        ["a.md#b", "c.md"]
    );
}

/// The `CSUM_OFFLOAD_*` name `text` starts with, if any.
fn env_name_at(text: &str) -> Option<String> {
    let name: String = text
        .chars()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    (name.starts_with("CSUM_OFFLOAD_") && name.len() > "CSUM_OFFLOAD_".len()).then_some(name)
}

/// The `CSUM_OFFLOAD_*` names in `text`.
fn env_names(text: &str) -> BTreeSet<String> {
    text.match_indices("CSUM_OFFLOAD_")
        .filter_map(|(i, _)| env_name_at(&text[i..]))
        .collect()
}

/// The `CSUM_OFFLOAD_*` string literals in the crate's sources: the names
/// the code reads (messages and help name them inside longer text).
fn env_names_read(src: &str) -> BTreeSet<String> {
    src.match_indices("\"CSUM_OFFLOAD_")
        .filter_map(|(i, _)| env_name_at(&src[i + 1..]))
        .filter(|n| src.contains(&format!("\"{n}\"")))
        .collect()
}

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
            out.push('\n');
        }
    }
}

#[test]
fn every_environment_variable_is_documented_and_every_documented_one_exists() {
    let mut src = String::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut src);
    let read = env_names_read(&src);
    assert!(
        read.contains("CSUM_OFFLOAD_RUNTIME"),
        "the scan finds the names: {read:?}"
    );
    // Help and messages name only variables that are read.
    assert_eq!(env_names(&src), read, "named in plugin/src but never read");
    let mut named = BTreeSet::new();
    for (page, text) in pages() {
        for name in env_names(&text) {
            named.insert(name.clone());
            assert!(read.contains(&name), "{page}: {name} is read nowhere");
        }
    }
    assert_eq!(named, read, "read by the code but in no page");
    // Each has its row in the installer's reference, and in --help.
    let install = read_page_table("docs/install.md", "\n## Installer reference", 2);
    assert_eq!(
        install
            .iter()
            .filter(|c| !c.is_empty())
            .cloned()
            .collect::<BTreeSet<_>>(),
        read,
        "docs/install.md, ## Installer reference, column Environment"
    );
    assert_eq!(env_names(&run(BIN, &["install", "--help"])), read);
}

/// Column `n` (from 1) of each row of the first table after `heading`,
/// with backticks removed.
fn read_page_table(page: &str, heading: &str, n: usize) -> Vec<String> {
    let text = read(page);
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("{page}: no heading {heading:?}"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| l.split('|').nth(n))
        .map(|c| c.trim().trim_matches('`').to_string())
        .collect()
}

/// The `--flags` a text names: each `--` followed by a lower-case word.
fn flags(text: &str) -> BTreeSet<String> {
    text.match_indices("--")
        .filter(|(i, _)| *i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())
        .map(|(i, _)| {
            let word: String = text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            format!("--{word}")
        })
        .filter(|f| f.len() > 2 && f.as_bytes()[2].is_ascii_lowercase())
        .collect()
}

/// Every command line in `text` that runs `csum-offload <command>`, as
/// (command, its flags): in an inline code span up to the closing
/// backtick, in a fenced block up to a shell separator, joined with the
/// lines that continue it (after a `\`, or a usage wrapped onto an
/// indented `[` line).
fn command_lines(text: &str, commands: &BTreeSet<String>) -> Vec<(String, BTreeSet<String>)> {
    let mut found = Vec::new();
    let mut take = |line: &str| {
        for (i, _) in line.match_indices("csum-offload ") {
            let rest = &line[i + "csum-offload ".len()..];
            let command: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if !commands.contains(&command) {
                continue;
            }
            let end = ["|", ";", "&&", ">", "`"]
                .iter()
                .filter_map(|s| rest.find(s))
                .min()
                .unwrap_or(rest.len());
            found.push((command, flags(&rest[..end])));
        }
    };
    let mut joined = String::new();
    for line in doc_lines(text) {
        let line = match line {
            DocLine::Fence => {
                take(&std::mem::take(&mut joined));
                continue;
            }
            DocLine::Prose(line) => {
                for (i, _) in line.match_indices('`') {
                    if line[i + 1..].starts_with("csum-offload ") {
                        take(&line[i + 1..]);
                    }
                }
                continue;
            }
            DocLine::Code(line) => line,
        };
        let continues = joined.trim_end().ends_with('\\') || line.trim_start().starts_with('[');
        if !continues {
            take(&std::mem::take(&mut joined));
        }
        joined.push(' ');
        joined.push_str(line);
    }
    take(&joined);
    found
}

/// The flags `csum-offload <command> --help` lists.
fn help_flags(command: &str) -> BTreeSet<String> {
    let mut f = flags(&run(BIN, &[command, "--help"]));
    f.insert("--help".into());
    f
}

/// Every documented flag that `--help` lacks, and (for the reference
/// tables) every flag `--help` has that the table lacks.
fn flag_mismatches(
    pages: &[(String, String)],
    tables: &[(&str, BTreeSet<String>, BTreeSet<String>)],
    commands: &BTreeSet<String>,
    help: &dyn Fn(&str) -> BTreeSet<String>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (page, text) in pages {
        for (command, named) in command_lines(text, commands) {
            let known = help(&command);
            for flag in named.difference(&known) {
                wrong.push(format!(
                    "{page}: `csum-offload {command} {flag}` is not in its --help"
                ));
            }
        }
    }
    for (what, table, known) in tables {
        for flag in table.difference(known) {
            wrong.push(format!("{what}: {flag} is not in --help"));
        }
        for flag in known.difference(table) {
            wrong.push(format!("{what}: {flag} (in --help) has no row"));
        }
    }
    wrong
}

/// The first word of each cell: "`--bridge NAME`" -> "--bridge".
fn first_words(cells: Vec<String>) -> BTreeSet<String> {
    cells
        .iter()
        .filter_map(|c| c.split_whitespace().next())
        .map(|w| w.trim_matches('`').to_string())
        .collect()
}

#[test]
fn every_flag_the_docs_name_is_in_its_commands_help_and_every_one_has_a_row() {
    let commands = commands();
    let mut installer = help_flags("install");
    installer.extend(help_flags("uninstall"));
    installer.remove("--help");
    let mut agent = help_flags("agent");
    agent.remove("--help");
    assert!(agent.contains("--resync") && installer.contains("--runtime"));
    let tables = [
        (
            "docs/install.md, ## Installer reference",
            first_words(read_page_table(
                "docs/install.md",
                "\n## Installer reference",
                1,
            )),
            installer,
        ),
        (
            "docs/agent.md, ## Commands",
            first_words(read_page_table("docs/agent.md", "\n## Commands", 1)),
            agent,
        ),
    ];
    let pages = pages();
    let lines: usize = pages
        .iter()
        .map(|(_, t)| command_lines(t, &commands).len())
        .sum();
    assert!(
        lines > 30,
        "only {lines} command lines found: is the scan reading the pages?"
    );
    let wrong = flag_mismatches(&pages, &tables, &commands, &help_flags);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_flag_and_environment_checks_see_a_mistake() {
    // The negative control of the two tests above.
    let commands: BTreeSet<String> = ["agent", "install"].map(String::from).into();
    let help = |c: &str| -> BTreeSet<String> {
        match c {
            "agent" => ["--once", "--dry-run", "--help"].map(String::from).into(),
            _ => ["--once", "--cni-conf-dir", "--help"]
                .map(String::from)
                .into(),
        }
    };
    let page = "Run `csum-offload agent --once --dry-runn` or `kubectl --context x` then\n\
        ```sh\n# csum-offload install --once \\\n    --cni-conf-dirr /x | grep --color y\n\
        csum-offload install [--once]\n                     [--bogus]\nnot csum-offload --once\n```\n";
    let lines = command_lines(page, &commands);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let table: BTreeSet<String> = ["--once", "--stale"].map(String::from).into();
    let wrong = flag_mismatches(
        &[("p.md".into(), page.into())],
        &[("table", table, help("agent"))],
        &commands,
        &help,
    );
    assert_eq!(
        wrong,
        [
            "p.md: `csum-offload agent --dry-runn` is not in its --help",
            "p.md: `csum-offload install --cni-conf-dirr` is not in its --help",
            "p.md: `csum-offload install --bogus` is not in its --help",
            "table: --stale is not in --help",
            "table: --dry-run (in --help) has no row",
            "table: --help (in --help) has no row",
        ]
    );
    assert_eq!(
        env_names("`CSUM_OFFLOAD_A`, CSUM_OFFLOAD_B=1 and CSUM_OFFLOAD_ alone"),
        ["CSUM_OFFLOAD_A", "CSUM_OFFLOAD_B"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        env_names_read(
            "env(\"CSUM_OFFLOAD_Z\"); pick(\"CSUM_OFFLOAD_A\"); // CSUM_OFFLOAD_B\n\"set CSUM_OFFLOAD_C=1\""
        ),
        ["CSUM_OFFLOAD_A", "CSUM_OFFLOAD_Z"].map(String::from).into()
    );
}
