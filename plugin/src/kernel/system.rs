//! Facts about the machine that are not netlink's or ethtool's: the
//! running kernel's release, and a PCI function's vendor:device from
//! sysfs.

use std::path::Path;

/// The running kernel's release (`uname -r`), e.g. "6.18.44-fc-v1045".
pub fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live, writable utsname for the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether `bus` is a PCI function address as ethtool's bus-info gives it
/// ("0000:01:00.0"): only then is it a name under /sys/bus/pci/devices.
fn is_pci_address(bus: &str) -> bool {
    let b = bus.as_bytes();
    b.len() == 12
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b':',
            10 => *c == b'.',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The PCI id of the function at `bus` as `lspci -n` prints it
/// ("8088:1001"), from its sysfs vendor and device files. For a virtio NIC
/// this is the PCI function's id (1af4:...), not the virtio device's.
pub fn pci_id(bus: &str) -> Option<String> {
    pci_id_under(Path::new("/sys/bus/pci/devices"), bus)
}

fn pci_id_under(root: &Path, bus: &str) -> Option<String> {
    if !is_pci_address(bus) {
        return None;
    }
    let read = |file: &str| -> Option<String> {
        // sysfs reports every attribute as 4096 bytes long.
        let bytes = crate::fsread::read_regular(&root.join(bus).join(file), 4096).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let hex = text.trim().strip_prefix("0x")?;
        (hex.len() == 4 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| hex.to_lowercase())
    };
    Some(format!("{}:{}", read("vendor")?, read("device")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_ids_from_a_sysfs_tree() {
        let root = crate::unit_dirs::fresh("system", "pci");
        let dev = root.join("0000:01:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vendor"), "0x8088\n").unwrap();
        std::fs::write(dev.join("device"), "0x1001\n").unwrap();
        assert_eq!(
            pci_id_under(&root, "0000:01:00.0").as_deref(),
            Some("8088:1001")
        );
        assert_eq!(
            pci_id_under(&root, "0000:02:00.0"),
            None,
            "no such function"
        );
        for bad in ["", "../../etc", "usb-0000:00:14.0-1", "0000:01:00.0/.."] {
            assert_eq!(pci_id_under(&root, bad), None, "{bad}");
        }
        std::fs::remove_dir_all(&root).unwrap();
        assert!(!kernel_release().is_empty());
    }
}
