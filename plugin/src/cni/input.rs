//! What the runtime sent, before it is a configuration: stdin read within
//! a bound, and the two ways it can fail to be one (bytes that are not a
//! network configuration, a prevResult the plugin cannot hand back). Below
//! both `netconf`, which parses, and `error`, which maps these to codes.

use std::io::Read;

/// Bytes on stdin that are not a network configuration at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read stdin: {0}")]
    Read(#[source] std::io::Error),
    #[error("stdin is larger than {} MiB; a network configuration is never that large", MAX_INPUT >> 20)]
    TooLarge,
    #[error("stdin is empty; expected the network configuration JSON")]
    Empty,
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("cniVersion must be a string, got {0}")]
    VersionNotString(String),
}

/// The most stdin the plugin reads. Runtimes send one plugin's config with
/// the previous result (a few KiB); the bound keeps memory proportional to
/// a sane input whatever is piped in.
pub const MAX_INPUT: u64 = 4 << 20;

/// Reads stdin up to `MAX_INPUT` bytes.
pub fn read_input(input: impl Read) -> Result<Vec<u8>, DecodeError> {
    let mut bytes = Vec::new();
    input
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(DecodeError::Read)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(DecodeError::TooLarge);
    }
    Ok(bytes)
}

/// A prevResult that is not a result this plugin can hand back.
#[derive(Debug, thiserror::Error)]
pub enum PrevResultError {
    #[error("prevResult must be an object, got {0}")]
    NotAnObject(String),
    #[error("{verb} requires prevResult: csum-offload is a chained plugin and must follow the plugin that creates the interface")]
    Missing { verb: &'static str },
    #[error("prevResult: {0}")]
    Json(#[source] serde_json::Error),
    #[error("prevResult cniVersion must be a string, got {0}")]
    VersionNotString(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_bounded() {
        let big = vec![b' '; MAX_INPUT as usize + 1];
        assert!(matches!(read_input(&big[..]), Err(DecodeError::TooLarge)));
        assert_eq!(read_input(&big[1..]).unwrap().len() as u64, MAX_INPUT);
    }
}
