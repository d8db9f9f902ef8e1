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
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let l = line.trim_start();
            let l = l
                .strip_prefix("# ")
                .or_else(|| l.strip_prefix("$ "))
                .unwrap_or(l);
            if let Some(rest) = l.strip_prefix("csum-offload ") {
                found.extend(word(rest));
            }
        } else {
            for (i, _) in line.match_indices("`csum-offload ") {
                found.extend(word(&line[i + "`csum-offload ".len()..]));
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
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
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
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
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
