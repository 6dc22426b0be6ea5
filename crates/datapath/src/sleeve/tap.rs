//! The TAP device: opened with IFF_VNET_HDR and TSO/USO offloads so the kernel hands us
//! (and takes from us) 64 KiB super-frames with their virtio_net_hdr, brought up and
//! attached to a bridge with plain ioctls in the caller's network namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::SleeveError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// Length of the virtio_net_hdr in front of every frame (the kernel's default size).
pub const VNET_HDR_LEN: usize = 10;

/// Offloads the TAP accepted (what the kernel may hand us as super-frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// TCP segmentation offload (IPv4 and IPv6).
    pub tso: bool,
    /// UDP segmentation offload (IPv4 and IPv6).
    pub uso: bool,
}

/// `struct ifreq`: a name and a 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> Result<IfReq, String> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) || b.contains(&b'/') {
            return Err(format!(
                "interface name {name:?} must be 1..15 bytes without '/' or NUL"
            ));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..b.len()].copy_from_slice(b);
        Ok(r)
    }
    fn set_i16(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }
    fn set_i32(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_i16(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }
}

fn ioctl(fd: RawFd, req: libc::c_ulong, arg: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: `arg` points to a live, correctly sized struct for `req` (checked by callers).
    let r = unsafe { libc::ioctl(fd, req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open TAP device; closing it (drop) removes the device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    offloads: Offloads,
    /// Where the device was made, and its index there: dropping the TAP deletes the
    /// device explicitly. Closing our descriptor alone does not when a child process
    /// forked by another thread still holds a copy of it (until it execs), so the device
    /// could outlive the sleeve, and a new one of the same name fail.
    home: Option<(crate::netns::Netns, u32)>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some((ns, index)) = &self.home {
            // Our descriptor still holds the device, so the index is still its own.
            if let Ok(mut h) = crate::nl::Handle::in_netns(ns) {
                let _ = crate::link::delete(&mut h, *index);
            }
        }
    }
}

fn tap_err(name: &str, op: &'static str) -> impl FnOnce(io::Error) -> SleeveError {
    let name = name.to_string();
    move |source| SleeveError::Tap { name, op, source }
}

/// A throwaway datagram socket for interface ioctls in the current network namespace.
fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before wrapping.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

impl Tap {
    /// Creates TAP device `name` in the caller's network namespace with vnet headers and
    /// TSO (and USO when the kernel has it), non-blocking.
    pub fn open(name: &str) -> Result<Tap, SleeveError> {
        let mut req = IfReq::new(name).map_err(SleeveError::Config)?;
        let path = CString::new("/dev/net/tun").map_err(|e| SleeveError::Config(e.to_string()))?;
        // SAFETY: open(2) with a valid C string; the result is checked.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            return Err(tap_err(name, "open /dev/net/tun")(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        req.set_i16(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
        ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq as *mut _)
            .map_err(tap_err(name, "TUNSETIFF (create TAP)"))?;
        let base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        let offloads = if set_offload(&fd, base | TUN_F_USO4 | TUN_F_USO6).is_ok() {
            Offloads {
                tso: true,
                uso: true,
            }
        } else {
            set_offload(&fd, base).map_err(tap_err(name, "TUNSETOFFLOAD"))?;
            Offloads {
                tso: true,
                uso: false,
            }
        };
        let cname = CString::new(name).map_err(|e| SleeveError::Config(e.to_string()))?;
        // SAFETY: if_nametoindex reads a valid C string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        let home = crate::netns::Netns::current()
            .ok()
            .filter(|_| index != 0)
            .map(|ns| (ns, index));
        Ok(Tap {
            fd,
            name: name.to_string(),
            offloads,
            home,
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offloads the kernel accepted.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), SleeveError> {
        let s = ctl_socket().map_err(tap_err(&self.name, "socket for ioctl"))?;
        let mut req = IfReq::new(&self.name).map_err(SleeveError::Config)?;
        req.set_i32(i32::try_from(mtu).unwrap_or(i32::MAX));
        ioctl(
            s.as_raw_fd(),
            libc::SIOCSIFMTU,
            &mut req as *mut IfReq as *mut _,
        )
        .map_err(tap_err(&self.name, "set MTU"))
    }

    /// Brings the device up.
    pub fn set_up(&self) -> Result<(), SleeveError> {
        let s = ctl_socket().map_err(tap_err(&self.name, "socket for ioctl"))?;
        let mut req = IfReq::new(&self.name).map_err(SleeveError::Config)?;
        ioctl(
            s.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut req as *mut IfReq as *mut _,
        )
        .map_err(tap_err(&self.name, "get flags"))?;
        let flags = req.get_i16() | libc::IFF_UP as i16;
        req.set_i16(flags);
        ioctl(
            s.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &mut req as *mut IfReq as *mut _,
        )
        .map_err(tap_err(&self.name, "set up"))
    }

    /// Makes the device a port of bridge `bridge`.
    pub fn attach_to_bridge(&self, bridge: &str) -> Result<(), SleeveError> {
        let cname =
            CString::new(self.name.as_str()).map_err(|e| SleeveError::Config(e.to_string()))?;
        // SAFETY: if_nametoindex reads a valid C string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(tap_err(&self.name, "find ifindex")(
                io::Error::last_os_error(),
            ));
        }
        let s = ctl_socket().map_err(tap_err(&self.name, "socket for ioctl"))?;
        let mut req = IfReq::new(bridge).map_err(SleeveError::Config)?;
        req.set_i32(index as i32);
        ioctl(s.as_raw_fd(), SIOCBRADDIF, &mut req as *mut IfReq as *mut _).map_err(|source| {
            SleeveError::Bridge {
                bridge: bridge.to_string(),
                tap: self.name.clone(),
                source,
            }
        })
    }

    /// Reads one message (virtio header + frame). `WouldBlock` when the queue is empty.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reading into a valid mutable buffer of the given length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes one message (virtio header + frame) into the bridge.
    pub fn write(&self, msg: &[u8]) -> io::Result<usize> {
        // SAFETY: writing from a valid buffer of the given length.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// The descriptor, for poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn set_offload(fd: &OwnedFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes the flags as the ioctl argument value itself.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, flags as libc::c_ulong) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
