//! Which local ports a program already holds in this network namespace, from the kernel's
//! socket tables (`/proc/net/{tcp,tcp6,udp,udp6}`): a port published by a service must not
//! take over one that is in use (a Docker `-p` mapping on Docker's own bridge is held by
//! docker-proxy; any other daemon by itself).

use weft_types::Proto;

/// The TCP state number of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Whether a socket of this namespace listens on (TCP) or is bound to (UDP) `port`.
pub fn in_use(proto: Proto, port: u16) -> bool {
    let files: [&str; 2] = match proto {
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
        // No socket table of SCTP here; services publish TCP and UDP only.
        Proto::Sctp => return false,
    };
    files.iter().any(|f| match std::fs::read_to_string(f) {
        Ok(table) => table_holds(&table, proto, port),
        // No IPv6 in this kernel: no such sockets.
        Err(_) => false,
    })
}

/// Whether a socket table (the text of `/proc/net/tcp` and the like) holds `port`:
/// listening for TCP, bound for UDP.
pub fn table_holds(table: &str, proto: Proto, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(_slot), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let Some(p) = local
            .rsplit_once(':')
            .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
        else {
            return false;
        };
        p == port && (proto == Proto::Udp || state == TCP_LISTEN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a host with sshd on 22 (listening), a connection from port 8000, and
    /// a resolver on 53/udp.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21712 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F40 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 99811 1 0000000000000000 20 4 30 10 -1
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1234 2 0000000000000000 0
";

    #[test]
    fn a_listening_tcp_port_counts_and_an_established_one_does_not() {
        assert!(table_holds(TCP, Proto::Tcp, 22));
        assert!(!table_holds(TCP, Proto::Tcp, 8000));
        assert!(!table_holds(TCP, Proto::Tcp, 80));
    }

    #[test]
    fn a_bound_udp_port_counts_in_ipv6_tables_too() {
        assert!(table_holds(UDP6, Proto::Udp, 53));
        assert!(!table_holds(UDP6, Proto::Udp, 5353));
    }

    #[test]
    fn damaged_lines_are_passed_over() {
        let table = "header\n garbage\n 0: nocolon 0 0A\n 1: 0:ZZZZ 0 0A\n";
        assert!(!table_holds(table, Proto::Tcp, 0));
    }
}
