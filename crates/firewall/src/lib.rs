//! nftables rules: isolation, masquerade, port publishing, service VIPs.
