//! A small synchronous rtnetlink client: one NETLINK_ROUTE socket, bound to the
//! namespace it was opened in, that sends one request and collects its answer.
//!
//! Messages are built and parsed with netlink-packet-route; this file only frames,
//! sends, receives and maps kernel NACKs to errno.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// An open rtnetlink socket.
pub struct Handle {
    fd: OwnedFd,
    seq: u32,
    /// Where the socket lives, for messages.
    pub(crate) what: String,
}

/// Serialises one request with the given flags (REQUEST is always added).
pub(crate) fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

impl Handle {
    /// Opens a socket in the calling thread's namespace (the host, for the router).
    pub fn current() -> Result<Handle> {
        Self::open("current netns".into())
    }

    /// Opens a socket inside `ns`; requests on it act on that namespace.
    pub fn in_netns(ns: &Netns) -> Result<Handle> {
        if ns.is_current() {
            return Self::open(ns.describe().to_string());
        }
        let what = ns.describe().to_string();
        ns.run(move || Self::open(what))?
    }

    fn open(what: String) -> Result<Handle> {
        let io_err = |op: &str, source| Error::Io {
            op: format!("{op} in {what}"),
            source,
        };
        // SAFETY: plain socket(2); checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io_err("open netlink socket", io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is a valid "let the kernel pick the port" address.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sa is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io_err("bind netlink socket", io::Error::last_os_error()));
        }
        // Acks then carry only the header of the failed request, not the whole request.
        let one: libc::c_int = 1;
        // SAFETY: valid option pointer and length; failure is harmless (older kernels).
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_CAP_ACK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        Ok(Handle { fd, seq: 1, what })
    }

    /// Sends a request that changes something and waits for the kernel's ack.
    pub(crate) fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, flags | NLM_F_ACK, false).map(|_| ())
    }

    /// Sends a GET that answers with one message (e.g. a route lookup).
    pub(crate) fn get(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_ACK, false)
    }

    /// Sends a dump request and returns all answers.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP, true)
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        dump: bool,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let buf = encode(msg, flags, seq);
        // SAFETY: buf is valid for its length; the kernel address is implied (bound socket).
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: rbuf is valid writable memory of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    rbuf.as_mut_ptr() as *mut libc::c_void,
                    rbuf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let data = rbuf.get(..n as usize).unwrap_or(&[]);
            let mut off = 0usize;
            while off < data.len() {
                let chunk = &data[off..];
                let len = match NetlinkBuffer::new_checked(chunk) {
                    Ok(b) => b.length() as usize,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                };
                let msg_bytes = chunk.get(..len).unwrap_or(chunk);
                off += (len + 3) & !3;
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg_bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if parsed.header.sequence_number != seq {
                    continue; // a late answer to an earlier request
                }
                match parsed.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                        None => return Ok(out),
                    },
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
