//! Gratuitous ARP: tells every host on the segment "this IP is now at this MAC", so
//! neighbour tables follow an address that moved to another container or host.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Length of an ARP-over-Ethernet frame without padding.
pub const FRAME_LEN: usize = 42;
const ETH_P_ARP: u16 = 0x0806;

/// Builds a gratuitous ARP request (sender IP = target IP = `ip`, to broadcast).
///
/// A request rather than a reply: Linux takes both as gratuitous, and a request also
/// reaches hosts that would ignore unsolicited replies.
pub fn gratuitous_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // op: request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // f[32..38]: target hardware address stays zero (unknown).
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Sends one gratuitous ARP per address out of link `ifindex` inside `netns`.
pub fn announce(netns: &Netns, ifindex: u32, mac: [u8; 6], ips: &[Ipv4Addr]) -> Result<()> {
    let fd = netns.socket(
        libc::AF_PACKET,
        libc::SOCK_RAW,
        i32::from(ETH_P_ARP.to_be()),
    )?;
    for ip in ips {
        let frame = gratuitous_frame(mac, *ip);
        // SAFETY: an all-zero sockaddr_ll is valid; fields are set below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = ETH_P_ARP.to_be();
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: frame and sa are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(Error::Io {
                op: format!(
                    "send gratuitous ARP for {ip} on link #{ifindex} in {}",
                    netns.describe()
                ),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gratuitous ARP `busybox arping -U -I vx 10.32.0.9` sent from 02:11:22:33:44:55,
    /// captured with tcpdump. busybox puts ff:ff:.. in the target hardware address; RFC 5227
    /// says zero, which is what weft sends: those six bytes are the only difference.
    const CAPTURED_GARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x0a, 0x20,
        0x00, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x20, 0x00, 0x09,
    ];

    #[test]
    fn frame_matches_a_real_gratuitous_arp() {
        let f = gratuitous_frame(
            [0x02, 0x11, 0x22, 0x33, 0x44, 0x55],
            Ipv4Addr::new(10, 32, 0, 9),
        );
        assert_eq!(f[..32], CAPTURED_GARP[..32]);
        assert_eq!(f[32..38], [0u8; 6]);
        assert_eq!(f[38..], CAPTURED_GARP[38..]);
    }
}
