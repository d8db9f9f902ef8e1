//! A small `--flag value` / `--flag` reader for the operator commands:
//! each command takes what it knows, and `finish` rejects the rest.

/// A command line the command cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("{0} needs a value")]
    NeedsValue(String),
    #[error("unexpected argument {0:?}; see --help")]
    Unexpected(String),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{0} and {1} do not go together")]
    Conflict(&'static str, &'static str),
}

pub struct Args {
    args: Vec<String>,
}

impl Args {
    pub fn new(args: Vec<String>) -> Self {
        Self { args }
    }

    /// Takes `--name VALUE` (or `--name=VALUE`).
    pub fn value(&mut self, name: &str) -> Result<Option<String>, ArgsError> {
        let prefix = format!("{name}=");
        if let Some(pos) = self.args.iter().position(|a| a.starts_with(&prefix)) {
            return Ok(Some(self.args.remove(pos)[prefix.len()..].to_string()));
        }
        let Some(pos) = self.args.iter().position(|a| a == name) else {
            return Ok(None);
        };
        if pos + 1 >= self.args.len() {
            return Err(ArgsError::NeedsValue(name.to_string()));
        }
        self.args.remove(pos);
        Ok(Some(self.args.remove(pos)))
    }

    /// Takes `--name`; true if it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.args.iter().position(|a| a == name) {
            Some(pos) => {
                self.args.remove(pos);
                true
            }
            None => false,
        }
    }

    /// Fails on anything not consumed.
    pub fn finish(self) -> Result<(), ArgsError> {
        match self.args.into_iter().next() {
            None => Ok(()),
            Some(a) => Err(ArgsError::Unexpected(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Args {
        Args::new(a.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn values_flags_and_leftovers() {
        let mut a = args(&["--x", "1", "--y=2", "--f", "extra"]);
        assert_eq!(a.value("--x").unwrap().as_deref(), Some("1"));
        assert_eq!(a.value("--y").unwrap().as_deref(), Some("2"));
        assert_eq!(a.value("--z").unwrap(), None);
        assert!(a.flag("--f"));
        assert!(!a.flag("--f"));
        assert_eq!(
            a.finish().unwrap_err().to_string(),
            "unexpected argument \"extra\"; see --help"
        );
        let mut a = args(&["--x"]);
        assert_eq!(a.value("--x").unwrap_err().to_string(), "--x needs a value");
    }
}
