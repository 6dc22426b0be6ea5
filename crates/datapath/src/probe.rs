//! The fastdp heartbeat socket: an AF_PACKET socket that sends raw Ethernet frames
//! straight into the VXLAN device (so they travel exactly like container traffic, through
//! its FDB to the peer's VTEP on UDP 6784) and receives the heartbeat frames that arrive
//! for this host's bridge MAC with weft's heartbeat ethertype.
//!
//! The frame layout and the path decision are the router's (sans-IO); this is only I/O.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};
use crate::link;
use crate::nl::Handle;

/// Ethertype of fastdp heartbeats (IEEE 802 "local experimental ethertype 1").
pub const ETHERTYPE: u16 = 0x88b5;

/// An open heartbeat socket.
#[derive(Debug)]
pub struct ProbeSocket {
    fd: OwnedFd,
    send_ifindex: i32,
}

fn sockaddr(ifindex: i32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = protocol.to_be();
    sa.sll_ifindex = ifindex;
    sa
}

impl ProbeSocket {
    /// Opens a non-blocking socket in the current netns that receives heartbeat frames
    /// delivered to `bridge` and sends through `vxlan`.
    pub fn open(bridge: &str, vxlan: &str) -> Result<ProbeSocket> {
        let mut h = Handle::current()?;
        let br = link::require(&mut h, bridge)?;
        let vx = link::require(&mut h, vxlan)?;
        let io_err = |op: &str| {
            let op = format!("{op} (heartbeat socket on {bridge}/{vxlan})");
            move |source| Error::Io { op, source }
        };
        // SAFETY: plain socket(2); checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(ETHERTYPE.to_be()),
            )
        };
        if raw < 0 {
            return Err(io_err("open AF_PACKET socket")(io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sa = sockaddr(br.index as i32, ETHERTYPE);
        // SAFETY: binding a valid sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(io_err("bind")(io::Error::last_os_error()));
        }
        // The routers of a mesh send their heartbeats on the same second, so a whole
        // mesh's heartbeats and answers arrive in one burst: room for thousands of the
        // largest (size probes). Beyond net.core.rmem_max only as root (FORCE); else what
        // the kernel allows, which is still the default at least.
        let room: libc::c_int = 8 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a pointer to a c_int of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&room as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            if rc == 0 {
                break;
            }
        }
        Ok(ProbeSocket {
            fd,
            send_ifindex: vx.index as i32,
        })
    }

    /// Sends one whole Ethernet frame into the VXLAN device.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut sa = sockaddr(self.send_ifindex, ETHERTYPE);
        sa.sll_halen = 6;
        if let Some(dst) = frame.get(..6) {
            sa.sll_addr[..6].copy_from_slice(dst);
        }
        // SAFETY: frame is a valid buffer; sa is a valid sockaddr_ll.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame (with its Ethernet header); `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid writable memory of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl AsRawFd for ProbeSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
