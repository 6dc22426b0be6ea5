//! Sans-IO mesh core: peer identity, handshake, gossip, topology and routes.
