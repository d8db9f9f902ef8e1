//! An AF_PACKET socket bound to one interface: every frame it sees, in
//! either direction, with the kernel's checksum status for it.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Enough for a 64 KiB GSO packet (the largest the veth hands over when
/// TSO is on) plus headers.
pub const MAX_FRAME: usize = 256 * 1024;

/// `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// tp_status bits: the checksum is left for the device to complete
/// (CHECKSUM_PARTIAL), or was verified by the device.
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;

/// One received frame's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The frame's real length (larger than `len` if it did not fit).
    pub wire_len: usize,
    /// `true` for frames the interface sent (PACKET_OUTGOING), `false` for
    /// frames it received.
    pub outgoing: bool,
    /// The kernel says the checksum is not yet filled in (CHECKSUM_PARTIAL).
    pub csum_not_ready: bool,
    pub csum_valid: bool,
}

pub struct PacketSocket {
    fd: OwnedFd,
    pub ifname: String,
    pub ifindex: i32,
    /// The interface's MTU when the socket was opened.
    pub mtu: u32,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: value points to a live T of the given size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub fn ifindex(ifname: &str) -> io::Result<i32> {
    let c = CString::new(ifname).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: c is a valid C string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {ifname:?} in this network namespace"),
        ));
    }
    Ok(index as i32)
}

/// SIOCGIFMTU on `fd`: the MTU of `ifname` in the socket's netns (not
/// /sys, which shows the netns sysfs was mounted in).
fn mtu(fd: i32, ifname: &str) -> io::Result<u32> {
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: req is a valid ifreq the kernel fills in.
    check(unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) })?;
    // SAFETY: SIOCGIFMTU sets the ifru_mtu member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

impl PacketSocket {
    /// Opens a raw packet socket on `ifname` in promiscuous mode (dropped
    /// with the socket). It is created with protocol 0, which receives
    /// nothing, and only starts receiving when bound to the interface, so
    /// no frame from another interface slips in before the bind.
    pub fn open(ifname: &str, ignore_outgoing: bool) -> io::Result<Self> {
        let ifindex = ifindex(ifname)?;
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        })?;
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)?;
        if ignore_outgoing {
            setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)?;
        }
        let rcvbuf: libc::c_int = 8 * 1024 * 1024;
        // Best effort: a bigger buffer only makes drops less likely.
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf);
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &rcvbuf);
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: sll is a valid sockaddr_ll of the given size.
        check(unsafe {
            libc::bind(
                raw,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        // SAFETY: all-zero is a valid packet_mreq.
        let mut mreq: libc::packet_mreq = unsafe { zeroed() };
        mreq.mr_ifindex = ifindex;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
        let mtu = mtu(raw, ifname)?;
        Ok(Self {
            fd,
            ifname: ifname.to_string(),
            ifindex,
            mtu,
        })
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Receives one frame if one is queued (the socket is non-blocking).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: zeroed sockaddr_ll / msghdr are valid; every pointer set
        // below points to a live local for the duration of the call.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        // SAFETY: an all-zero msghdr is valid (no name, iov or control).
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = &mut from as *mut libc::sockaddr_ll as *mut libc::c_void;
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: msg describes valid buffers (see above).
        let n = unsafe { libc::recvmsg(self.raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        let mut aux = TpacketAuxdata::default();
        // SAFETY: walking the control buffer the kernel filled, with the
        // libc CMSG helpers, reading only a cmsg of the expected type.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET
                    && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                {
                    aux = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const TpacketAuxdata);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let wire_len = n as usize;
        Ok(Some(Received {
            len: wire_len.min(buf.len()),
            wire_len,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
            csum_not_ready: aux.tp_status & TP_STATUS_CSUMNOTREADY != 0,
            csum_valid: aux.tp_status & TP_STATUS_CSUM_VALID != 0,
        }))
    }

    /// Sends `frame` out of the interface exactly as given: no checksum is
    /// computed or completed (the skb is CHECKSUM_NONE).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is a valid buffer of the given length.
        let n = unsafe {
            libc::send(
                self.raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Waits up to `timeout_ms` for any of `fds` to become readable; returns
/// the readiness of each.
pub fn poll_readable(fds: &[i32], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents & libc::POLLIN != 0).collect())
}
