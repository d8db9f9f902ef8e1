//! The kernel's ethtool ioctl (SIOCETHTOOL): driver name and offload
//! features of one interface, in the netns of the socket used.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// Issues one ethtool command; `data` is the command struct, its first u32
/// the command number.
fn ethtool(fd: BorrowedFd<'_>, ifname: &str, data: *mut libc::c_void) -> io::Result<i32> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data.cast();
    // SAFETY: `ifr` is a valid ifreq and `data` points to a command struct
    // sized for what the command writes (callers size it from GSSET_INFO).
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            SIOCETHTOOL as _,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// What ETHTOOL_GDRVINFO reports (`ethtool -i`); empty strings for what
/// the driver leaves blank (the in-kernel txgbe sets no version).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverInfo {
    pub driver: String,
    pub version: String,
    pub firmware: String,
    /// The bus address: a PCI function ("0000:01:00.0") for PCI NICs.
    pub bus: String,
}

/// The driver bound to the interface and what it says of itself
/// (ETHTOOL_GDRVINFO).
pub fn driver_info(fd: BorrowedFd<'_>, ifname: &str) -> io::Result<DriverInfo> {
    // struct ethtool_drvinfo: cmd, then driver, version, fw_version,
    // bus_info, erom_version (32 bytes each), reserved2[12], then five u32.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        strings: [[u8; 32]; 5],
        rest: [u8; 12 + 5 * 4],
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        strings: [[0; 32]; 5],
        rest: [0; 12 + 5 * 4],
    };
    ethtool(fd, ifname, (&mut info as *mut DrvInfo).cast())?;
    let text = |b: &[u8; 32]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok(DriverInfo {
        driver: text(&info.strings[0]),
        version: text(&info.strings[1]),
        firmware: text(&info.strings[2]),
        bus: text(&info.strings[3]),
    })
}

/// The driver bound to the interface, e.g. "txgbe".
pub fn driver(fd: BorrowedFd<'_>, ifname: &str) -> io::Result<String> {
    driver_info(fd, ifname).map(|i| i.driver)
}

/// The kernel's feature names, indexed by feature bit (ETH_SS_FEATURES).
/// The table is global to the kernel; any interface can be asked.
pub fn feature_names(fd: BorrowedFd<'_>, ifname: &str) -> io::Result<Vec<String>> {
    // ethtool_sset_info { cmd, reserved, sset_mask: u64, data[1]: u32 }
    let mut sset = [0u32; 5];
    sset[0] = ETHTOOL_GSSET_INFO;
    sset[2] = 1 << ETH_SS_FEATURES; // low half of the u64 mask (little and big endian differ)
    if cfg!(target_endian = "big") {
        sset.swap(2, 3);
    }
    ethtool(fd, ifname, sset.as_mut_ptr().cast())?;
    let count = sset[4] as usize;
    if count == 0 || count > 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("kernel reports {count} feature names"),
        ));
    }
    // ethtool_gstrings { cmd, string_set, len, data[len * 32] }
    let words = 3 + count * ETH_GSTRING_LEN / 4;
    let mut buf = vec![0u32; words];
    buf[0] = ETHTOOL_GSTRINGS;
    buf[1] = ETH_SS_FEATURES;
    buf[2] = count as u32;
    ethtool(fd, ifname, buf.as_mut_ptr().cast())?;
    // SAFETY: reinterpreting the u32 buffer as bytes is always valid.
    let bytes = unsafe {
        std::slice::from_raw_parts(buf.as_ptr().add(3).cast::<u8>(), count * ETH_GSTRING_LEN)
    };
    Ok(bytes
        .chunks(ETH_GSTRING_LEN)
        .map(|s| {
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect())
}

/// One interface's feature bits (ETHTOOL_GFEATURES blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureState {
    available: Vec<u32>,
    /// What was asked for; `active` may differ when a dependency is off
    /// (ethtool's "off [requested on]").
    requested: Vec<u32>,
    active: Vec<u32>,
    never_changed: Vec<u32>,
}

fn bit(words: &[u32], i: usize) -> bool {
    words.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0)
}

impl FeatureState {
    /// Builds a state from per-feature flags (active, changeable).
    #[cfg(test)]
    pub(crate) fn from_flags(flags: &[(bool, bool)]) -> Self {
        let blocks = flags.len().div_ceil(32).max(1);
        let mut s = Self {
            available: vec![0; blocks],
            requested: vec![0; blocks],
            active: vec![0; blocks],
            never_changed: vec![0; blocks],
        };
        for (i, &(active, changeable)) in flags.iter().enumerate() {
            if active {
                s.active[i / 32] |= 1 << (i % 32);
                s.requested[i / 32] |= 1 << (i % 32);
            }
            if changeable {
                s.available[i / 32] |= 1 << (i % 32);
            }
        }
        s
    }

    pub fn active(&self, i: usize) -> bool {
        bit(&self.active, i)
    }

    pub fn requested(&self, i: usize) -> bool {
        bit(&self.requested, i)
    }

    /// What `ethtool -k` shows without `[fixed]`: the driver offers the bit
    /// and the core has not pinned it.
    pub fn changeable(&self, i: usize) -> bool {
        bit(&self.available, i) && !bit(&self.never_changed, i)
    }
}

pub fn features(fd: BorrowedFd<'_>, ifname: &str, count: usize) -> io::Result<FeatureState> {
    let blocks = count.div_ceil(32);
    // ethtool_gfeatures { cmd, size, features[size] { available, requested, active, never_changed } }
    let mut buf = vec![0u32; 2 + blocks * 4];
    buf[0] = ETHTOOL_GFEATURES;
    buf[1] = blocks as u32;
    ethtool(fd, ifname, buf.as_mut_ptr().cast())?;
    let field = |k: usize| {
        (0..blocks)
            .map(|b| buf[2 + b * 4 + k])
            .collect::<Vec<u32>>()
    };
    Ok(FeatureState {
        available: field(0),
        requested: field(1),
        active: field(2),
        never_changed: field(3),
    })
}

/// Requests features on or off (ETHTOOL_SFEATURES); returns the kernel's
/// ETHTOOL_F_* flags. The caller reads the state back to see what stuck.
pub fn set_features(
    fd: BorrowedFd<'_>,
    ifname: &str,
    count: usize,
    changes: &[(usize, bool)],
) -> io::Result<i32> {
    let blocks = count.div_ceil(32);
    // ethtool_sfeatures { cmd, size, features[size] { valid, requested } }
    let mut buf = vec![0u32; 2 + blocks * 2];
    buf[0] = ETHTOOL_SFEATURES;
    buf[1] = blocks as u32;
    for &(i, on) in changes {
        if i >= count {
            continue;
        }
        buf[2 + (i / 32) * 2] |= 1 << (i % 32);
        if on {
            buf[2 + (i / 32) * 2 + 1] |= 1 << (i % 32);
        }
    }
    ethtool(fd, ifname, buf.as_mut_ptr().cast())
}
