//! Reading a file someone else named (a `--config` file, a file in the CNI
//! conf dir) without ever blocking and without surprises: only a regular
//! file is opened, never a FIFO (whose open or read waits for a writer), a
//! device (whose open may act: a watchdog, a tty) or a directory, and only
//! up to a size bound.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a regular file; the text names what it is ("a FIFO").
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is larger than {0} bytes")]
    TooLarge(u64),
}

impl ReadError {
    /// The file is not there (or a dangling link): not an error for
    /// callers that list a directory and race with its writers.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// What a file that is not a regular one is, for messages.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// The bytes of the regular file at `path` (symlinks followed, as kubelet's
/// ConfigMap volumes need), at most `max` of them.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    // stat first: it never blocks and never opens the file, so a FIFO or a
    // device is refused before any open(2) could wait or act.
    let before = std::fs::metadata(path)?;
    if !before.is_file() {
        return Err(ReadError::NotRegular(kind_of(&before)));
    }
    // O_NONBLOCK too, in case the name was swapped for a FIFO since.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta)));
    }
    read_bounded(&file, max)
}

/// The rest of an open regular file (from its offset), at most `max`
/// bytes: the read half of `read_regular`, for callers that opened and
/// checked the file themselves (`kernel::private`'s state files).
pub fn read_bounded(file: &File, max: u64) -> Result<Vec<u8>, ReadError> {
    let len = file.metadata()?.len();
    if len > max {
        return Err(ReadError::TooLarge(max));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_only_and_bounded() {
        let dir = crate::unit_dirs::fresh("fsread", "kinds");
        let file = dir.join("f.json");
        std::fs::write(&file, b"{}").unwrap();
        assert_eq!(read_regular(&file, 10).unwrap(), b"{}");
        assert!(matches!(
            read_regular(&file, 1),
            Err(ReadError::TooLarge(1))
        ));
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_regular(&fifo, 10).unwrap_err();
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
        assert_eq!(
            read_regular(&dir, 10).unwrap_err().to_string(),
            "is a directory, not a regular file"
        );
        assert_eq!(
            read_regular(Path::new("/dev/null"), 10)
                .unwrap_err()
                .to_string(),
            "is a character device, not a regular file"
        );
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            read_regular(&link, 10).unwrap(),
            b"{}",
            "links are followed"
        );
        assert!(read_regular(&dir.join("missing"), 10)
            .unwrap_err()
            .is_not_found());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
